"""A headless-Chromium screenshot of the Temporal Web UI's workflow list, filtered by ticket key.

For a person or an artifact job, not for `make test`: it may install Debian's `chromium` (root, apt).

    .venv/bin/python scripts/screenshot_web_ui.py                      # starts `examples/demo.py --serve`
    .venv/bin/python scripts/screenshot_web_ui.py --ui-url http://localhost:8233 --key ENG-7

Without --ui-url it runs the demo (dev server on 7233, Web UI on 8233, ticket ENG-123 to a branch),
waits for its "== serving" line, takes the screenshot and stops the demo again.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_UI = "http://localhost:8233"


def ensure_chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("no `chromium`: run `apt-get update && apt-get install -y chromium` as root, then retry")
    print("== installing Debian chromium (apt-get)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, env=env)
    return shutil.which("chromium") or sys.exit("apt-get installed chromium, but it is not on PATH")


def start_demo(timeout: float) -> subprocess.Popen:
    """`examples/demo.py --serve`, once it has run its ticket and says it is serving."""
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--serve"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + timeout
    for line in demo.stdout:  # blocks per line; the demo's own --timeout bounds a stuck job
        print(f"   demo: {line.rstrip()}", flush=True)
        if line.startswith("== serving"):
            return demo
        if time.monotonic() > deadline:
            break
    stop_demo(demo)
    sys.exit(f"the demo did not reach '== serving' within {timeout:.0f}s (exit code {demo.returncode})")


def stop_demo(demo: subprocess.Popen) -> None:
    if demo.poll() is None:
        demo.send_signal(signal.SIGTERM)  # the demo stops its conductor, dev server and moto
        try:
            demo.wait(timeout=90)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()


def list_url(ui_url: str, namespace: str, key: str) -> str:
    """The Web UI's workflow list with a visibility query (UI 2.x reads it from `?query=`)."""
    query = urllib.parse.quote(f'TicketKey="{key}"', safe="")
    return f"{ui_url.rstrip('/')}/namespaces/{namespace}/workflows?query={query}"


def wait_for_ui(ui_url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(ui_url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"no Web UI answers at {ui_url}")
            time.sleep(0.5)


def screenshot(chromium: str, url: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",  # root in a container has no user namespace for the sandbox
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                # No update checks, component downloads or sync: the machine may be offline.
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--window-size=1600,1000",
                # Lets the UI's fetches to the dev server finish before the picture is taken.
                "--virtual-time-budget=15000",
                f"--screenshot={out}",
                url,
            ],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
        )
    if not out.exists() or out.stat().st_size == 0:
        sys.exit(f"chromium wrote no screenshot to {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--ui-url", help=f"a running Web UI (default: start the demo, {DEMO_UI})")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--key", default="ENG-123", help="ticket key to filter by (the demo runs ENG-123)")
    parser.add_argument("--out", type=Path, help="PNG path (default: artifacts/web-ui-<key>.png)")
    parser.add_argument("--demo-timeout", type=float, default=300, help="seconds for the demo to serve")
    args = parser.parse_args()
    out = (args.out or ROOT / "artifacts" / f"web-ui-{args.key}.png").resolve()

    chromium = ensure_chromium()
    demo = None if args.ui_url else start_demo(args.demo_timeout)
    try:
        ui_url = args.ui_url or DEMO_UI
        wait_for_ui(ui_url)
        url = list_url(ui_url, args.namespace, args.key)
        print(f"== screenshot of {url}", flush=True)
        screenshot(chromium, url, out)
    finally:
        if demo is not None:
            print("== stopping the demo", flush=True)
            stop_demo(demo)
    print(f"== wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
