"""An incident chain's report issue, from the chain workflow's side (deterministic code; the I/O is the
activity activities/incident_report.py).

What each chain's report holds lives in the chain workflow's input (`reports`, `reports_due`), so it
survives continue-as-new. A job's end and an alarm joining a reported chain make the chain's report due;
due reports are sent one chain at a time from a background task: the chain never waits on GitHub, and a
report that fails after its few tries is logged (the next one rewrites the whole issue anyway).
"""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.incident_report import IncidentReports
    from contracts.alarms import AccountChains
    from contracts.incidents import IncidentChainInput, JobFinished
    from contracts.status import REPORT_NAMES_LIMIT, IncidentOutcome, IncidentReportInput, IncidentReportState
    from workflows.chaining import find_chain

INCIDENT_REPORTS = "incident-report-issue"
REPORT_TIMEOUT = timedelta(seconds=30)
REPORT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=3
)
# What the reports keep rides in every continue-as-new input: bounded per outcome, per chain and in
# chains (at most about 250 KB); the oldest chains' reports are no longer updated past it.
OUTCOMES_KEPT = 3
OUTCOME_REPORT_CHARS = 1_500
REPORTS_KEPT = 50


class ChainReports:
    def __init__(self) -> None:
        self._input: IncidentChainInput | None = None
        self._chains: AccountChains | None = None
        self._sender: asyncio.Task | None = None
        # The chain whose report is on its way (due again in the next run if this one continues meanwhile).
        self._sending = ""

    def bind(self, input: IncidentChainInput, chains: AccountChains) -> None:
        self._input, self._chains = input, chains

    def job_ended(self, report: JobFinished) -> None:
        """A job's end goes into its chain's report (a later attempt of the same job replaces it)."""
        wanted = self._input.incident_reports and report.github_repo
        if not wanted or not workflow.patched(INCIDENT_REPORTS):
            return
        reports = self._input.reports
        state = reports.setdefault(report.chain_id, IncidentReportState(github_repo=report.github_repo))
        outcome = IncidentOutcome(
            job_id=report.job_id,
            state=report.state,
            attempt=report.attempt,
            reason=report.reason,
            report=report.report[-OUTCOME_REPORT_CHARS:],
            pr_url=report.pr_url,
        )
        kept = [earlier for earlier in state.outcomes if earlier.job_id != report.job_id]
        state.outcomes = (kept + [outcome])[-OUTCOMES_KEPT:]
        for oldest in list(reports)[: max(0, len(reports) - REPORTS_KEPT)]:
            del reports[oldest]
        self._due(report.chain_id)

    def alarm_joined(self, chain_id: str) -> None:
        if chain_id in self._input.reports:
            self._due(chain_id)

    def forget(self, chain_id: str) -> None:
        """The chain was pruned: its issue stays as it is."""
        self._input.reports.pop(chain_id, None)

    def send(self) -> None:
        if self._input.reports_due and (self._sender is None or self._sender.done()):
            self._sender = asyncio.create_task(self._send_all())

    def idle(self) -> bool:
        return not self._input.reports_due and (self._sender is None or self._sender.done())

    def due_to_carry(self) -> list[str]:
        """For continue-as-new: the due reports, and the one on its way (sent again: the activity edits)."""
        return list(dict.fromkeys([self._sending] * bool(self._sending) + self._input.reports_due))

    def _due(self, chain_id: str) -> None:
        if chain_id not in self._input.reports_due:
            self._input.reports_due.append(chain_id)

    async def _send_all(self) -> None:
        while self._input.reports_due:
            # Taken off before sending: an alarm or an outcome arriving meanwhile makes it due again.
            self._sending = self._input.reports_due.pop(0)
            report = self._report(self._sending)
            if report is None:
                continue
            try:
                await workflow.execute_activity_method(
                    IncidentReports.report_incident,
                    report,
                    start_to_close_timeout=REPORT_TIMEOUT,
                    retry_policy=REPORT_RETRY,
                )
            except ActivityError as err:
                workflow.logger.warning(
                    "incident report of %s not sent: %s", report.chain_id, err.cause or err
                )
        self._sending = ""

    def _report(self, chain_id: str) -> IncidentReportInput | None:
        chain, state = find_chain(self._chains, chain_id), self._input.reports.get(chain_id)
        if chain is None or state is None:
            return None  # pruned meanwhile
        names = sorted({alarm.alarm_name for alarm in self._input.dossiers.get(chain_id, [])})
        return IncidentReportInput(
            chain_id=chain_id,
            account=chain.account,
            github_repo=state.github_repo,
            alarm_count=chain.alarm_count,
            first_at=chain.earliest_at,
            last_at=chain.latest_at,
            alarm_names=names[:REPORT_NAMES_LIMIT],
            outcomes=state.outcomes,
        )
