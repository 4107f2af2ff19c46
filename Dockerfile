# The conductor's image: `docker-compose.temporal.yml` builds it, infra/ deploys it (conductorImage). It can
# serve as the agent's image too (agentImage): the Fargate launcher runs it with `conductor-agent run`,
# which is why the default command is a CMD and not an ENTRYPOINT (an override replaces it whole).

FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
# The protobuf code is built, never committed: the protoc call of `make proto`, before the wheel is made so
# that the wheel contains it. grpcio-tools stays in this stage.
RUN pip install --no-cache-dir "grpcio-tools>=1.80" \
 && python -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. --pyi_out=. proto/conductor/v1/*.proto \
 && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
# git: the publishers push with it; the per-job agent clones, commits and bundles with it.
# bubblewrap: the local launcher's sandbox (README "Sandbox").
RUN apt-get update \
 && apt-get install -y --no-install-recommends git bubblewrap \
 && rm -rf /var/lib/apt/lists/*
# The coding-agent CLIs the agent supports, pinned as the Makefile pins them (agent_runtime/coding_agents/;
# tests/unit/test_compose.py checks the three agree). About 800 MB: build with INSTALL_AGENT_CLIS=0 for a
# conductor-only image (the conductor never runs them).
ARG INSTALL_AGENT_CLIS=1
ARG CODEX_VERSION=0.169.0
ARG CLAUDE_CODE_VERSION=2.1.332
RUN if [ "$INSTALL_AGENT_CLIS" = 1 ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends nodejs npm ca-certificates \
      && npm install --global --prefix /opt/agent-clis --no-audit --no-fund \
           @openai/codex@$CODEX_VERSION @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION \
      && npm cache clean --force \
      && rm -rf /var/lib/apt/lists/*; \
    fi
ENV PATH=/opt/agent-clis/bin:$PATH
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# A fixed uid owning the state dir, which the conductor writes: on Fargate (infra/) the image's own
# /var/lib/conductor on the task's ephemeral storage, under compose a volume mounted there.
RUN groupadd --gid 10001 conductor \
 && useradd --uid 10001 --gid 10001 --create-home conductor \
 && mkdir -p /var/lib/conductor \
 && chown conductor:conductor /var/lib/conductor
USER conductor
ENV CONDUCTOR_STATE_DIR=/var/lib/conductor
WORKDIR /var/lib/conductor
CMD ["conductor", "serve"]
