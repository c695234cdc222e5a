#!/usr/bin/env python3
"""Runs Prism's backend acceptance suites on every backend x mode in parallel
and prints a backend x capability matrix.

    uv run tooling/acceptance.py [--suites keyvalue,timeseries,pubsub]
        [--backends memstore,sqlite,postgres,redis,nats,kafka]
        [--modes embedded,process] [--format terminal|markdown|json]
        [--out DIR] [--include-broken-fixture] [-j N] [--no-build]

Suites: KeyValue (test target `acceptance` of memstore, sqlite, postgres
and redis, embedded and as pattern processes; rows `backend/mode`),
TimeSeries (target `timeseries` of memstore, sqlite, postgres, embedded and
as pattern processes, and of kafka for SQLite with a Kafka log behind its
tails, row `sqlite+kafka`, embedded only; rows `timeseries:backend/mode`)
and PubSub (target `pubsub` of nats, redis, kafka, embedded and as pattern
processes; rows `pubsub:backend/mode`). Capability columns appear as some
run claims or tests them.

It builds every such test target once (cargo test --no-run), then runs
each (backend, mode) as its own process of that test binary, filtered to `embedded::` or `process::`, with
PRISM_ACCEPTANCE_REPORT pointing at a report file of its own. Every case
appends one JSON line there when it finishes:

    {"suite": "keyvalue", "backend": "redis", "mode": "process",
     "case": "ttl_expiry", "capability": "ttl", "claimed": ["ttl", ...],
     "outcome": "passed", "seconds": 0.42}

The report lines are cross-checked with the test binary's own list of
cases, its `test NAME ... ok|FAILED|ignored` lines and its exit code: a
case that left no line (it crashed the binary, or the run timed out) counts
as failed.

Exit status: 0 when every core case and every case of a claimed capability
passed in every run (and nothing else failed); 1 otherwise, with a one-line
reason; 2 on a usage or build error.

Standard library only.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]

#: Capabilities in the order of the matrix columns (pattern_core::Capability::ALL).
CAPABILITIES = (
    "ttl",
    "scan",
    "conditional_write",
    "transactions",
    "snapshot_reads",
    "idempotency",
    "durable",
)
#: The column of the cases that need no capability.
CORE = "core"

#: Backend name -> the cargo package holding its `acceptance` test target.
BACKENDS = {
    "memstore": "pattern-memstore",
    "sqlite": "pattern-sqlite",
    "postgres": "pattern-postgres",
    "redis": "pattern-redis",
}
MODES = ("embedded", "process")
SUITE_TARGET = "acceptance"

#: The other DALs' suites: suite -> (test target, {backend: package}). Their
#: backends run in every mode (except those in EMBEDDED_ONLY), and their
#: rows are labelled `suite:backend/mode`.
DAL_SUITES = {
    "timeseries": (
        "timeseries",
        {
            "memstore": "pattern-memstore",
            "sqlite": "pattern-sqlite",
            "postgres": "pattern-postgres",
            # SQLite with a Kafka log behind its tails (`timeseries.log`).
            "sqlite+kafka": "pattern-kafka",
        },
    ),
    "pubsub": (
        "pubsub",
        {"nats": "pattern-nats", "redis": "pattern-redis", "kafka": "pattern-kafka"},
    ),
}
#: Rows that have no process mode: the Kafka log behind a TimeSeries tail
#: is composed in the proxy, in front of whichever store it has.
EMBEDDED_ONLY = {("timeseries", "sqlite+kafka")}
SUITES = ("keyvalue", *DAL_SUITES)
#: Every backend of any suite, for --backends.
ALL_BACKENDS = {b: None for b in [*BACKENDS, *(b for _, pk in DAL_SUITES.values() for b in pk)]}
#: Test target -> the suite name shown in row labels (none for KeyValue).
_LABEL_PREFIX = {target: f"{suite}:" for suite, (target, _) in DAL_SUITES.items()}


def run_label(target: str, backend: str, mode: str) -> str:
    """`backend/mode` for KeyValue rows, `suite:backend/mode` for the others."""
    return f"{_LABEL_PREFIX.get(target, '')}{backend}/{mode}"

#: Outcomes a report line may carry.
PASSED, FAILED, NOT_APPLICABLE = "passed", "failed", "not_applicable"
#: A case the test binary skipped (`#[ignore]`); it wrote no report line.
IGNORED = "ignored"
OUTCOMES = (PASSED, FAILED, NOT_APPLICABLE)

#: Matrix cells (the JSON values) and how terminal and markdown show them.
CELL_PASS = "pass"
CELL_FAIL = "fail"
CELL_NA = "n/a"
CELL_NOT_TESTED = "not_tested"
CELL_NOT_CLAIMED = "not_claimed"
CELL_UNKNOWN = "unknown"
CELL_TEXT = {
    CELL_PASS: "pass",
    CELL_FAIL: "FAIL",
    CELL_NA: "n/a",
    CELL_NOT_TESTED: "not tested",
    CELL_NOT_CLAIMED: "-",
    CELL_UNKNOWN: "?",
}
LEGEND = (
    ("pass", "claimed, and every case of it passed (core: every core case passed)"),
    (
        "FAIL",
        "a case failed or left no result (under core also: the run itself failed); "
        "the runner fails",
    ),
    ("n/a", "not claimed; the cases checked that the backend refuses cleanly"),
    (
        "not tested",
        "claimed, but this suite has no case for it (durable: the crash tests "
        "in tests/ cover it)",
    ),
    ("-", "not claimed, and this suite has no case for it"),
    ("?", "unknown: the backend never reported what it claims"),
)

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
#: Lines of a failing case's output shown under the matrix.
TAIL_LINES = 20
JSON_SCHEMA = "prism-acceptance/1"


class UsageError(Exception):
    """A usage or build error: the runner exits 2."""


@dataclasses.dataclass(frozen=True)
class Fixture:
    """A test target run besides the backends' acceptance targets."""

    backend: str
    package: str
    target: str
    mode: str
    ignored: bool


#: A backend that claims `ttl` but never expires anything: its ttl case
#: must fail, and so must the runner when it is included.
BROKEN_FIXTURE = Fixture(
    backend="broken-ttl-claim",
    package="pattern-memstore",
    target="broken_claim",
    mode="embedded",
    ignored=True,
)


@dataclasses.dataclass
class Job:
    """One run: a test binary filtered to one mode."""

    backend: str
    mode: str
    package: str
    target: str
    executable: Path
    cwd: Path
    ignored: bool = False

    @property
    def label(self) -> str:
        return run_label(self.target, self.backend, self.mode)


@dataclasses.dataclass
class RunResult:
    """What one run left: its output, exit code and report lines."""

    job: Job
    exit_code: int | None
    timed_out: bool
    seconds: float
    stdout: str
    stderr: str
    listed: list[str] | None
    report: list[dict[str, Any]]
    errors: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Case:
    test: str
    case: str
    capability: str | None
    column: str
    outcome: str
    seconds: float | None
    source: str
    detail: str | None = None
    output_tail: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class RunSummary:
    backend: str
    mode: str
    package: str
    target: str
    exit_code: int | None
    timed_out: bool
    seconds: float
    claimed: list[str] | None
    cases: list[Case]
    cells: dict[str, str]
    errors: list[str]
    warnings: list[str]
    output_tail: list[str]

    @property
    def label(self) -> str:
        return run_label(self.target, self.backend, self.mode)

    def count(self, outcome: str) -> int:
        return sum(1 for c in self.cases if c.outcome == outcome)

    @property
    def failed(self) -> bool:
        return bool(self.errors) or any(c.outcome == FAILED for c in self.cases)


@dataclasses.dataclass
class Matrix:
    columns: list[str]
    runs: list[RunSummary]

    @property
    def ok(self) -> bool:
        return bool(self.runs) and not any(r.failed for r in self.runs)

    def totals(self) -> dict[str, int]:
        out = {PASSED: 0, FAILED: 0, NOT_APPLICABLE: 0, IGNORED: 0}
        for run in self.runs:
            for outcome in out:
                out[outcome] += run.count(outcome)
        return out

    def failures(self) -> list[tuple[RunSummary, Case]]:
        return [(r, c) for r in self.runs for c in r.cases if c.outcome == FAILED]

    def reason(self) -> str:
        """One line: why the matrix failed (empty when it passed)."""
        if not self.runs:
            return "no acceptance run was selected"
        parts = []
        for run in self.runs:
            parts.extend(f"{run.label}: {e}" for e in run.errors)
        for run, case in self.failures():
            parts.append(f"{run.label} {case.column}: {case.test}")
        if not parts:
            return ""
        shown = "; ".join(parts[:4])
        more = f"; and {len(parts) - 4} more" if len(parts) > 4 else ""
        n_cases = len(self.failures())
        n_runs = sum(1 for r in self.runs if r.failed)
        cases = f"{n_cases} failing case(s); " if n_cases else ""
        return f"{cases}{n_runs} of {len(self.runs)} run(s) failed: {shown}{more}"


# --------------------------------------------------------------------------
# Parsing what a run left


_RESULT_LINE = re.compile(
    r"^test (?P<name>\S+) \.\.\. (?P<status>ok|FAILED|ignored)\b", re.MULTILINE
)
_SECTION = re.compile(r"^---- (?P<name>\S+) std(?:out|err) ----$")


def parse_test_results(stdout: str) -> dict[str, str]:
    """The test binary's own verdicts: test name -> ok|FAILED|ignored."""
    results: dict[str, str] = {}
    for m in _RESULT_LINE.finditer(stdout):
        results[m.group("name")] = m.group("status")
    return results


def parse_failure_output(stdout: str) -> dict[str, list[str]]:
    """The captured output libtest prints for each failed test
    (`---- NAME stdout ----` up to the next section)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        m = _SECTION.match(line)
        if m:
            current = sections.setdefault(m.group("name"), [])
            continue
        if current is not None and (line == "failures:" or line.startswith("test result:")):
            current = None
            continue
        if current is not None:
            current.append(line)
    return {name: _without_backtrace(_strip_blank(lines)) for name, lines in sections.items()}


def _without_backtrace(lines: list[str]) -> list[str]:
    """A failure's output up to its stack backtrace (RUST_BACKTRACE=1), so
    that the tail shown is the panic message, not the innermost frames."""
    for i, line in enumerate(lines):
        if line.startswith("stack backtrace:"):
            return _strip_blank(lines[:i]) + ["[stack backtrace cut]"]
    return lines


def parse_list(stdout: str) -> list[str]:
    """Test names from `--list --format terse` (`NAME: test`)."""
    names = []
    for line in stdout.splitlines():
        if line.endswith(": test"):
            names.append(line[: -len(": test")])
    return names


def read_report(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The JSON lines of a report file, and a message per bad line."""
    lines: list[dict[str, Any]] = []
    errors: list[str] = []
    if not path.exists():
        return lines, errors
    for n, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            errors.append(f"report line {n} is not JSON ({e.msg}): {raw[:120]!r}")
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("case"), str):
            errors.append(f"report line {n} has no case name: {raw[:120]!r}")
            continue
        lines.append(obj)
    return lines, errors


def _strip_blank(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _tail(lines: list[str], n: int = TAIL_LINES) -> list[str]:
    return lines[-n:]


# --------------------------------------------------------------------------
# From run results to the matrix


def _exit_text(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _capability_map(results: Iterable[RunResult]) -> dict[str, str | None]:
    """case -> capability, from every report line of every run: the suite is
    shared, so a case that left no line in one run can still be placed."""
    caps: dict[str, str | None] = {}
    for result in results:
        for line in result.report:
            if "capability" in line and line["case"] not in caps:
                cap = line["capability"]
                caps[line["case"]] = cap if isinstance(cap, str) else None
    return caps


def summarise(result: RunResult, capability_of: dict[str, str | None]) -> RunSummary:
    job = result.job
    prefix = f"{job.mode}::"
    errors = list(result.errors)
    warnings = list(result.warnings)
    binary = parse_test_results(result.stdout)
    sections = parse_failure_output(result.stdout)
    run_tail = _tail(
        _strip_blank((result.stdout.rstrip("\n") + "\n" + result.stderr).splitlines())
    )

    # The report lines, by test name; a case reported twice keeps its worst.
    rank = {FAILED: 3, PASSED: 1, NOT_APPLICABLE: 1}
    reported: dict[str, dict[str, Any]] = {}
    backend_names: set[str] = set()
    claimed_sets: list[list[str]] = []
    for line in result.report:
        name = f"{prefix}{line['case']}"
        if isinstance(line.get("backend"), str):
            backend_names.add(line["backend"])
        if line.get("mode") not in (None, job.mode):
            errors.append(
                f"case {line['case']} reported mode {line.get('mode')!r} in a {job.mode} run"
            )
        claimed = line.get("claimed")
        if isinstance(claimed, list) and all(isinstance(c, str) for c in claimed):
            claimed_sets.append(claimed)
        old = reported.get(name)
        if old is None or rank.get(line.get("outcome"), 3) > rank.get(old.get("outcome"), 3):
            reported[name] = line

    claimed: list[str] | None = None
    if claimed_sets:
        claimed = claimed_sets[0]
        if any(set(c) != set(claimed) for c in claimed_sets[1:]):
            errors.append("the backend claimed different capabilities in different cases")
            claimed = sorted({c for cs in claimed_sets for c in cs})

    backend = job.backend
    if len(backend_names) == 1:
        backend = backend_names.pop()
    elif len(backend_names) > 1:
        errors.append(f"report lines name several backends: {sorted(backend_names)}")

    names: list[str] = []
    seen: set[str] = set()
    for name in list(result.listed or []) + list(binary) + list(reported):
        if name.startswith(prefix) and name not in seen:
            seen.add(name)
            names.append(name)

    crashed = result.timed_out or result.exit_code is None or result.exit_code < 0
    cases: list[Case] = []
    for name in names:
        case_name = name[len(prefix):]
        line = reported.get(name)
        verdict = binary.get(name)
        detail = None
        seconds = None
        if line is not None:
            outcome = line.get("outcome")
            if outcome not in OUTCOMES:
                detail = f"report line has unknown outcome {outcome!r}"
                outcome = FAILED
            if verdict == "FAILED" and outcome != FAILED:
                detail = f"reported {outcome}, but the test binary says FAILED"
                outcome = FAILED
            if isinstance(line.get("seconds"), (int, float)):
                seconds = float(line["seconds"])
            capability = line.get("capability")
            capability = capability if isinstance(capability, str) else None
            source = "report"
        else:
            capability = capability_of.get(case_name)
            source = "binary" if verdict else "missing"
            if verdict == "ignored":
                outcome = IGNORED
            elif verdict == "FAILED":
                outcome, detail = FAILED, "failed without writing a report line"
            elif verdict == "ok":
                outcome = FAILED
                detail = (
                    "passed in the test binary but wrote no report line "
                    "(PRISM_ACCEPTANCE_REPORT)"
                )
            else:
                outcome = FAILED
                if result.timed_out:
                    detail = "no result: the run timed out"
                elif crashed:
                    detail = f"no result: the test binary was {_exit_text(result.exit_code)}"
                else:
                    detail = f"no result: the test binary never ran it ({_exit_text(result.exit_code)})"
        column = capability if capability else CORE
        if capability is None and line is None and case_name not in capability_of:
            detail = (detail + "; " if detail else "") + "capability unknown, shown under core"
        tail: list[str] = []
        if outcome == FAILED:
            tail = _tail(sections.get(name) or run_tail)
        cases.append(
            Case(
                test=name,
                case=case_name,
                capability=capability,
                column=column,
                outcome=outcome,
                seconds=seconds,
                source=source,
                detail=detail,
                output_tail=tail,
            )
        )

    # Claimed capabilities whose cases only checked the refusal: the suite
    # and the backend disagree, so the capability was never exercised.
    if claimed is not None:
        for c in cases:
            if c.outcome == NOT_APPLICABLE and c.capability in claimed:
                c.outcome = FAILED
                c.detail = f"{c.capability} is claimed, but the case reported not_applicable"
                c.output_tail = []

    ran = [c for c in cases if c.outcome != IGNORED]
    failed_cases = [c for c in cases if c.outcome == FAILED]
    if result.timed_out:
        errors.append("timed out")
    elif result.exit_code is None:
        pass  # could not start: already in errors
    elif result.exit_code != 0 and not failed_cases:
        errors.append(f"the test binary failed ({_exit_text(result.exit_code)}) but no case did")
    if not ran and not errors:
        errors.append(f"no {job.mode} case ran (nothing matched `{prefix}`)")

    return RunSummary(
        backend=backend,
        mode=job.mode,
        package=job.package,
        target=job.target,
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        seconds=result.seconds,
        claimed=claimed,
        cases=cases,
        cells={},
        errors=errors,
        warnings=warnings,
        output_tail=run_tail if errors else [],
    )


def cell(run: RunSummary, column: str) -> str:
    cases = [c for c in run.cases if c.column == column and c.outcome != IGNORED]
    if any(c.outcome == FAILED for c in cases):
        return CELL_FAIL
    if column == CORE:
        if run.errors:
            return CELL_FAIL  # the run itself failed (timed out, bad exit, ...)
        return CELL_PASS if cases else CELL_NOT_CLAIMED
    claimed = run.claimed
    if not cases:
        if claimed is None:
            return CELL_UNKNOWN
        return CELL_NOT_TESTED if column in claimed else CELL_NOT_CLAIMED
    if claimed is not None and column in claimed:
        return CELL_PASS  # every case passed (not_applicable ones were failed above)
    if all(c.outcome == NOT_APPLICABLE for c in cases):
        return CELL_NA
    if claimed is None and all(c.outcome == PASSED for c in cases):
        return CELL_PASS
    return CELL_NA


def build_matrix(results: list[RunResult]) -> Matrix:
    capability_of = _capability_map(results)
    runs = [summarise(r, capability_of) for r in results]
    columns = [CORE, *CAPABILITIES]
    for run in runs:
        extra = [c.column for c in run.cases] + list(run.claimed or [])
        for col in extra:
            if col not in columns:
                columns.append(col)
    for run in runs:
        run.cells = {col: cell(run, col) for col in columns}
    return Matrix(columns=columns, runs=runs)


# --------------------------------------------------------------------------
# Output


class _Style:
    def __init__(self, colour: bool):
        self.colour = colour

    def paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text

    def cell(self, value: str, width: int) -> str:
        text = CELL_TEXT[value].ljust(width)
        code = {
            CELL_PASS: "32",
            CELL_FAIL: "1;31",
            CELL_NA: "2",
            CELL_NOT_TESTED: "33",
            CELL_UNKNOWN: "35",
        }.get(value)
        return self.paint(text, code) if code else text


def summary_lines(matrix: Matrix) -> list[str]:
    t = matrix.totals()
    errored = sum(1 for r in matrix.runs if r.errors)
    run_errors = f" ({errored} of them with errors of their own)" if errored else ""
    return [
        f"{t[PASSED]} cases passed, {t[NOT_APPLICABLE]} not applicable (clean refusal "
        f"checked), {t[FAILED]} failed, {t[IGNORED]} ignored, in {len(matrix.runs)} runs"
        f"{run_errors}",
        f"acceptance: {t[PASSED] + t[NOT_APPLICABLE]} passed, {t[FAILED]} failed, "
        f"{t[IGNORED]} skipped",
    ]


def render_terminal(matrix: Matrix, colour: bool = False) -> str:
    style = _Style(colour)
    head = ["backend/mode", *matrix.columns]
    rows = [[r.label, *(r.cells[c] for c in matrix.columns)] for r in matrix.runs]
    widths = [len(h) for h in head]
    for row in rows:
        widths[0] = max(widths[0], len(row[0]))
        for i, value in enumerate(row[1:], 1):
            widths[i] = max(widths[i], len(CELL_TEXT[value]))
    out = ["", "Acceptance matrix (rows: backend/mode; columns: core cases, then capabilities)", ""]
    out.append("  ".join(style.paint(h.ljust(w), "1") for h, w in zip(head, widths)).rstrip())
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [style.cell(v, w) for v, w in zip(row[1:], widths[1:])]
        out.append("  ".join(cells).rstrip())
    out.append("")
    out.append("  ".join(f"{k} = {v}" for k, v in LEGEND[:1]))
    for key, text in LEGEND[1:]:
        out.append(f"{key} = {text}")
    failures = matrix.failures()
    errored = [r for r in matrix.runs if r.errors]
    if failures or errored:
        out += ["", style.paint("Failing cases", "1")]
        for run, case in failures:
            detail = f": {case.detail}" if case.detail else ""
            out.append(f"  {run.label}  {case.test}  [{case.column}]{detail}")
            out += [f"      | {line}" for line in case.output_tail]
        for run in errored:
            for error in run.errors:
                out.append(f"  {run.label}: {error}")
            if not any(c.outcome == FAILED for c in run.cases):
                out += [f"      | {line}" for line in run.output_tail]
    out.append("")
    out += summary_lines(matrix)
    return "\n".join(out) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_label(run: RunSummary) -> str:
    """`backend / mode` (with the suite first for TimeSeries and PubSub)."""
    return f"{_LABEL_PREFIX.get(run.target, '')}{run.backend} / {run.mode}"


def render_markdown(matrix: Matrix) -> str:
    out = ["# Prism acceptance matrix", ""]
    verdict = "PASS" if matrix.ok else "FAIL"
    reason = matrix.reason()
    out.append(f"**Result: {verdict}**" + (f" ({_md_escape(reason)})" if reason else ""))
    out.append("")
    out.append("| backend / mode | " + " | ".join(matrix.columns) + " |")
    out.append("|---|" + "---|" * len(matrix.columns))
    for run in matrix.runs:
        cells = []
        for col in matrix.columns:
            text = CELL_TEXT[run.cells[col]]
            cells.append(f"**{text}**" if run.cells[col] == CELL_FAIL else text)
        out.append(f"| {_md_label(run)} | " + " | ".join(cells) + " |")
    out.append("")
    for key, text in LEGEND:
        out.append(f"- `{key}`: {text}")
    out.append("")
    out.append("| backend / mode | passed | not applicable | failed | ignored | seconds |")
    out.append("|---|---|---|---|---|---|")
    for run in matrix.runs:
        out.append(
            f"| {_md_label(run)} | {run.count(PASSED)} | {run.count(NOT_APPLICABLE)} "
            f"| {run.count(FAILED)} | {run.count(IGNORED)} | {run.seconds:.1f} |"
        )
    failures = matrix.failures()
    errored = [r for r in matrix.runs if r.errors]
    if failures or errored:
        out += ["", "## Failing cases", ""]
        for run, case in failures:
            detail = f": {_md_escape(case.detail)}" if case.detail else ""
            out.append(f"- `{run.label}` `{case.test}` ({case.column}){detail}")
            if case.output_tail:
                out += ["", "  ```text", *(f"  {line}" for line in case.output_tail), "  ```", ""]
        for run in errored:
            for error in run.errors:
                out.append(f"- `{run.label}`: {_md_escape(error)}")
    while out and not out[-1]:
        out.pop()
    out.append("")
    out += summary_lines(matrix)
    return "\n".join(out) + "\n"


def to_json(matrix: Matrix) -> dict[str, Any]:
    totals = matrix.totals()
    return {
        "schema": JSON_SCHEMA,
        "ok": matrix.ok,
        "reason": matrix.reason() or None,
        "columns": matrix.columns,
        "totals": totals,
        "runs": [
            {
                "suite": r.target if r.target in _LABEL_PREFIX else "keyvalue",
                "backend": r.backend,
                "mode": r.mode,
                "package": r.package,
                "target": r.target,
                "ok": not r.failed,
                "exit_code": r.exit_code,
                "timed_out": r.timed_out,
                "seconds": round(r.seconds, 3),
                "claimed": r.claimed,
                "cells": r.cells,
                "counts": {k: r.count(k) for k in totals},
                "errors": r.errors,
                "warnings": r.warnings,
                "cases": [
                    {
                        "test": c.test,
                        "case": c.case,
                        "capability": c.capability,
                        "column": c.column,
                        "outcome": c.outcome,
                        "seconds": c.seconds,
                        "source": c.source,
                        "detail": c.detail,
                        "output_tail": c.output_tail,
                    }
                    for c in r.cases
                ],
            }
            for r in matrix.runs
        ],
    }


# --------------------------------------------------------------------------
# Running


#: Test binaries running now (each leads its own process group), so that an
#: interrupt can stop them and what they started.
_LIVE: set[int] = set()
_LIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()


def _kill_group(pgid: int) -> bool:
    """SIGKILL what is left of a run's process group; True if anything was."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def run_job(job: Job, workdir: Path, timeout: float, env: dict[str, str] | None = None) -> RunResult:
    """Runs one (backend, mode): lists its cases, then runs them with a
    report file of their own. Output goes to files, so a child process that
    outlives the binary cannot hold the run open."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", job.label)
    report = workdir / f"{stem}.report.jsonl"
    out_path = workdir / f"{stem}.stdout"
    err_path = workdir / f"{stem}.stderr"
    report.unlink(missing_ok=True)
    run_env = dict(os.environ if env is None else env)
    run_env["PRISM_ACCEPTANCE_REPORT"] = str(report)
    run_env.setdefault("CARGO_MANIFEST_DIR", str(job.cwd))
    filter_args = [f"{job.mode}::"] + (["--ignored"] if job.ignored else [])
    errors: list[str] = []
    warnings: list[str] = []
    start = time.monotonic()

    listed: list[str] | None = None
    try:
        proc = subprocess.run(
            [str(job.executable), *filter_args, "--list", "--format", "terse"],
            cwd=job.cwd,
            env=run_env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=min(timeout, 120),
        )
        if proc.returncode == 0:
            listed = [n for n in parse_list(proc.stdout) if n.startswith(f"{job.mode}::")]
        else:
            errors.append(f"listing the cases failed ({_exit_text(proc.returncode)})")
    except subprocess.TimeoutExpired:
        errors.append("listing the cases timed out")
    except OSError as e:
        return RunResult(job, None, False, 0.0, "", "", None, [], [f"cannot run {job.executable}: {e}"])

    timed_out = False
    code: int | None = None
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        with _LIVE_LOCK:
            if _STOPPING.is_set():
                return RunResult(job, None, False, 0.0, "", "", listed, [], ["interrupted"])
            try:
                proc = subprocess.Popen(
                    [str(job.executable), *filter_args, "--color", "never"],
                    cwd=job.cwd,
                    env=run_env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            except OSError as e:
                return RunResult(job, None, False, 0.0, "", "", listed, [], [f"cannot run {job.executable}: {e}"])
            _LIVE.add(proc.pid)
        try:
            code = proc.wait(timeout=max(1.0, timeout - (time.monotonic() - start)))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            code = proc.wait()
        else:
            if _kill_group(proc.pid):
                warnings.append("processes it started outlived the test binary; killed them")
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc.pid)
    seconds = time.monotonic() - start
    lines, report_errors = read_report(report)
    return RunResult(
        job=job,
        exit_code=code,
        timed_out=timed_out,
        seconds=seconds,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
        listed=listed,
        report=lines,
        errors=errors + report_errors,
        warnings=warnings,
    )


def progress_line(done: int, total: int, summary: RunSummary) -> str:
    verdict = "FAIL" if summary.failed else "ok"
    extra = []
    if summary.count(IGNORED):
        extra.append(f"{summary.count(IGNORED)} ignored")
    if summary.timed_out:
        extra.append("timed out")
    elif summary.exit_code not in (0, None):
        extra.append(_exit_text(summary.exit_code))
    extra += summary.errors[:1]
    tail = f" ({'; '.join(extra)})" if extra else ""
    return (
        f"[{done}/{total}] {summary.label:<28} {verdict:<4} {summary.count(PASSED)} passed, "
        f"{summary.count(FAILED)} failed, {summary.count(NOT_APPLICABLE)} n/a in "
        f"{summary.seconds:.1f}s{tail}"
    )


def run_all(
    jobs: list[Job], parallel: int, timeout: float, log=None
) -> list[RunResult]:
    """Runs the jobs in parallel; the results come back in the jobs' order."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    results: dict[int, RunResult] = {}
    with tempfile.TemporaryDirectory(prefix="prism-acceptance-") as tmp:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            futures = {
                pool.submit(run_job, job, Path(tmp), timeout): i for i, job in enumerate(jobs)
            }
            try:
                for n, future in enumerate(concurrent.futures.as_completed(futures), 1):
                    i = futures[future]
                    results[i] = future.result()
                    # Progress only: the final matrix places every case
                    # again with what all runs reported.
                    log(progress_line(n, len(jobs), summarise(results[i], _capability_map([results[i]]))))
            except BaseException:
                # Interrupted: the test binaries run in sessions of their
                # own, so Ctrl-C does not reach them; stop them here.
                for future in futures:
                    future.cancel()
                with _LIVE_LOCK:
                    _STOPPING.set()
                    for pgid in list(_LIVE):
                        _kill_group(pgid)
                raise
    return [results[i] for i in range(len(jobs))]


# --------------------------------------------------------------------------
# Building


def cargo_metadata() -> dict[str, Any]:
    proc = subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise UsageError(f"cargo metadata failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout)


def _packages(metadata: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in metadata["packages"]}


def check_targets(metadata: dict[str, Any], wanted: list[tuple[str, str]]) -> None:
    """Every (package, test target) exists, or a usage error says which not."""
    packages = _packages(metadata)
    problems = []
    for package, target in wanted:
        pkg = packages.get(package)
        if pkg is None:
            problems.append(f"package {package} is not in the workspace")
            continue
        if not any(t["name"] == target and "test" in t["kind"] for t in pkg["targets"]):
            where = Path(pkg["manifest_path"]).parent / "tests" / f"{target}.rs"
            problems.append(
                f"package {package} has no test target `{target}` "
                f"(expected {where.relative_to(ROOT) if where.is_relative_to(ROOT) else where})"
            )
    if problems:
        raise UsageError("; ".join(problems))


def parse_build_messages(lines: Iterable[str], manifests: dict[str, str], targets: set[str]) -> dict[tuple[str, str], str]:
    """(package, target) -> test executable, from cargo's JSON messages.
    `manifests` maps manifest path -> package name."""
    found: dict[tuple[str, str], str] = {}
    for raw in lines:
        raw = raw.strip()
        if not raw.startswith("{"):
            continue
        try:
            msg = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg.get("profile", {}).get("test"):
            continue
        target = msg.get("target", {})
        if target.get("name") not in targets or "test" not in target.get("kind", []):
            continue
        package = manifests.get(msg.get("manifest_path", ""))
        if package:
            found[(package, target["name"])] = msg["executable"]
    return found


def build(metadata: dict[str, Any], wanted: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    packages = sorted({p for p, _ in wanted})
    targets = sorted({t for _, t in wanted})
    cmd = ["cargo", "test", "--no-run", "--message-format=json-render-diagnostics"]
    for p in packages:
        cmd += ["-p", p]
    for t in targets:
        cmd += ["--test", t]
    print(f"acceptance: building: {' '.join(cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise UsageError(f"the build failed ({_exit_text(proc.returncode)}): {' '.join(cmd)}")
    manifests = {p["manifest_path"]: p["name"] for p in metadata["packages"]}
    found = parse_build_messages(proc.stdout.splitlines(), manifests, set(targets))
    missing = [f"{p} --test {t}" for p, t in wanted if (p, t) not in found]
    if missing:
        raise UsageError(f"cargo built no test executable for: {', '.join(missing)}")
    return found


def _cache_path(metadata: dict[str, Any]) -> Path:
    return Path(metadata["target_directory"]) / "prism-tooling" / "acceptance-executables.json"


def save_executables(metadata: dict[str, Any], found: dict[tuple[str, str], str]) -> None:
    path = _cache_path(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    old: dict[str, str] = {}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
    old.update({f"{p} {t}": exe for (p, t), exe in found.items()})
    path.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")


def load_executables(metadata: dict[str, Any], wanted: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    path = _cache_path(metadata)
    try:
        cached = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise UsageError(f"--no-build: no earlier build recorded in {path}; run once without --no-build")
    found = {}
    for p, t in wanted:
        exe = cached.get(f"{p} {t}")
        if not exe or not Path(exe).exists():
            raise UsageError(f"--no-build: no built test executable for {p} --test {t}; run once without --no-build")
        found[(p, t)] = exe
    return found


# --------------------------------------------------------------------------
# Command line


def _csv(allowed: Iterable[str], what: str):
    allowed = list(allowed)

    def parse(text: str) -> list[str]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in items if s not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(bad) or '(none given)'}; choose from {','.join(allowed)}"
            )
        return list(dict.fromkeys(items))

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tooling/acceptance.py",
        description="Run the backend acceptance suite on every backend x mode in parallel "
        "and print a backend x capability matrix.",
    )
    parser.add_argument("--backends", type=_csv(ALL_BACKENDS, "backend"), default=None,
                        help="comma-separated backends (default: every backend of each suite: "
                        + ",".join(ALL_BACKENDS) + ")")
    parser.add_argument("--suites", type=_csv(SUITES, "suite"), default=list(SUITES),
                        help="comma-separated suites (default: keyvalue,timeseries,pubsub); "
                        "--backends filters each suite's backends")
    parser.add_argument("--modes", type=_csv(MODES, "mode"), default=list(MODES),
                        help="comma-separated modes (default: embedded,process)")
    parser.add_argument("--format", choices=("terminal", "markdown", "json"), default="terminal",
                        help="what to print on stdout (default: terminal)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="also write DIR/acceptance.md and DIR/acceptance.json")
    parser.add_argument("--include-broken-fixture", action="store_true",
                        help="also run the broken-ttl-claim fixture (pattern-memstore, test target "
                        "broken_claim); the runner must then fail")
    parser.add_argument("-j", "--jobs", type=int, default=max(2, os.cpu_count() or 2), metavar="N",
                        help="runs at once (default: the number of CPUs, at least 2)")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                        help="time limit of one run (default: 600)")
    parser.add_argument("--no-build", action="store_true",
                        help="use the test executables of the last build instead of building")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("-j must be at least 1")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, str, str, str, bool]]:
    """(backend, mode, package, target, ignored) of every run, in matrix order."""
    runs = []
    backends = set(args.backends) if args.backends else None
    if "keyvalue" in args.suites:
        kv = [b for b in BACKENDS if backends is None or b in backends]
        runs += [(b, m, BACKENDS[b], SUITE_TARGET, False) for b in kv for m in args.modes]
    for suite, (target, packages) in DAL_SUITES.items():
        if suite not in args.suites:
            continue
        for backend, package in packages.items():
            if backends is not None and backend not in backends:
                continue
            for mode in args.modes:
                if mode == "embedded" or (suite, backend) not in EMBEDDED_ONLY:
                    runs.append((backend, mode, package, target, False))
    if args.include_broken_fixture:
        f = BROKEN_FIXTURE
        runs.append((f.backend, f.mode, f.package, f.target, f.ignored))
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        runs = plan(args)
        wanted = list(dict.fromkeys((p, t) for _, _, p, t, _ in runs))
        metadata = cargo_metadata()
        if args.no_build:
            executables = load_executables(metadata, wanted)
        else:
            check_targets(metadata, wanted)
            executables = build(metadata, wanted)
            save_executables(metadata, executables)
    except UsageError as e:
        print(f"acceptance: error: {e}", file=sys.stderr)
        return EXIT_USAGE

    dirs = {p["name"]: Path(p["manifest_path"]).parent for p in metadata["packages"]}
    jobs = [
        Job(backend=b, mode=m, package=p, target=t, executable=Path(executables[(p, t)]),
            cwd=dirs[p], ignored=ign)
        for b, m, p, t, ign in runs
    ]
    print(f"acceptance: {len(jobs)} runs, {min(args.jobs, len(jobs))} at a time", file=sys.stderr, flush=True)
    try:
        results = run_all(jobs, args.jobs, args.timeout)
    except KeyboardInterrupt:
        print("acceptance: interrupted; stopped the running test binaries", file=sys.stderr)
        return 130
    matrix = build_matrix(results)

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "acceptance.md").write_text(render_markdown(matrix))
        (args.out / "acceptance.json").write_text(json.dumps(to_json(matrix), indent=2) + "\n")
    if args.format == "json":
        sys.stdout.write(json.dumps(to_json(matrix), indent=2) + "\n")
    elif args.format == "markdown":
        sys.stdout.write(render_markdown(matrix))
    else:
        colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        sys.stdout.write(render_terminal(matrix, colour=colour))
    sys.stdout.flush()
    if args.format == "json":
        for line in summary_lines(matrix):
            print(line, file=sys.stderr)
    if args.out:
        print(f"acceptance: wrote {args.out / 'acceptance.md'} and {args.out / 'acceptance.json'}", file=sys.stderr)
    if matrix.ok:
        print("acceptance: PASS: every core case and every claimed capability passed", file=sys.stderr)
        return EXIT_OK
    print(f"acceptance: FAIL: {matrix.reason()}", file=sys.stderr)
    return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
