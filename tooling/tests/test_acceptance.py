"""Tests of the acceptance matrix runner (tooling/acceptance.py).

    uv run python -m unittest discover -s tooling/tests -v

Most tests feed the matrix logic synthetic report lines and test-binary
output; some run a fake test binary (a Python script that behaves like a
libtest binary with PRISM_ACCEPTANCE_REPORT); the last one runs the real
runner on memstore and the broken-ttl-claim fixture.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

TOOLING = Path(__file__).resolve().parents[1]
ROOT = TOOLING.parent
sys.path.insert(0, str(TOOLING))

import acceptance as acc  # noqa: E402

ALL_CAPS = ["ttl", "scan", "conditional_write", "transactions", "snapshot_reads", "idempotency"]


def job(backend="memstore", mode="embedded", ignored=False, exe="/nonexistent"):
    return acc.Job(
        backend=backend,
        mode=mode,
        package="pattern-" + backend,
        target="acceptance",
        executable=Path(exe),
        cwd=ROOT,
        ignored=ignored,
    )


def line(case, capability=None, outcome="passed", claimed=ALL_CAPS, backend="memstore", mode="embedded"):
    return {
        "suite": "keyvalue",
        "backend": backend,
        "mode": mode,
        "case": case,
        "capability": capability,
        "claimed": claimed,
        "outcome": outcome,
        "seconds": 0.01,
    }


def libtest_stdout(verdicts, failures=None):
    """What a libtest binary prints: `test NAME ... ok` lines, failure
    sections and the summary."""
    out = [f"\nrunning {len(verdicts)} tests"]
    out += [f"test {name} ... {v}" for name, v in verdicts.items()]
    if failures:
        out += ["", "failures:", ""]
        for name, text in failures.items():
            out += [f"---- {name} stdout ----", *text.splitlines(), ""]
        out += ["", "failures:", *(f"    {n}" for n in failures), ""]
    failed = sum(1 for v in verdicts.values() if v == "FAILED")
    passed = sum(1 for v in verdicts.values() if v == "ok")
    verdict = "FAILED" if failed else "ok"
    out.append(f"test result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out")
    return "\n".join(out) + "\n"


def result(report, verdicts=None, exit_code=None, listed=None, failures=None, backend="memstore",
           mode="embedded", timed_out=False, stderr="", errors=None):
    verdicts = verdicts if verdicts is not None else {
        f"{mode}::{l['case']}": ("FAILED" if l["outcome"] == "failed" else "ok") for l in report
    }
    if exit_code is None:
        exit_code = 101 if any(v == "FAILED" for v in verdicts.values()) else 0
    return acc.RunResult(
        job=job(backend, mode),
        exit_code=exit_code,
        timed_out=timed_out,
        seconds=1.5,
        stdout=libtest_stdout(verdicts, failures),
        stderr=stderr,
        listed=listed if listed is not None else list(verdicts),
        report=report,
        errors=list(errors or []),
    )


def healthy(backend="memstore", mode="embedded", claimed=ALL_CAPS):
    """A run of a backend where every core case passed and each capability
    case passed if claimed, else was not applicable."""
    report = [
        line("put_get_roundtrip", None, backend=backend, mode=mode, claimed=claimed),
        line("selections", None, backend=backend, mode=mode, claimed=claimed),
    ]
    for case, cap in [
        ("ttl_expiry", "ttl"),
        ("scan_pages", "scan"),
        ("conditional_writes", "conditional_write"),
        ("mutate_atomicity", "transactions"),
        ("snapshot_scan", "snapshot_reads"),
        ("idempotency_tokens", "idempotency"),
    ]:
        outcome = "passed" if cap in claimed else "not_applicable"
        report.append(line(case, cap, outcome, claimed=claimed, backend=backend, mode=mode))
    return result(report, backend=backend, mode=mode)


class MatrixLogic(unittest.TestCase):
    def test_all_passing_runs_pass(self):
        m = acc.build_matrix([healthy(), healthy(mode="process")])
        self.assertTrue(m.ok, m.reason())
        self.assertEqual(m.reason(), "")
        cells = m.runs[0].cells
        self.assertEqual(m.columns, ["core", *ALL_CAPS, "durable"])
        for col in ["core", *ALL_CAPS]:
            self.assertEqual(cells[col], acc.CELL_PASS, col)
        # durable has no case here, and memstore does not claim it
        self.assertEqual(cells["durable"], acc.CELL_NOT_CLAIMED)

    def test_claimed_and_failed_fails_the_runner(self):
        r = healthy(backend="broken-ttl-claim")
        for l in r.report:
            if l["case"] == "ttl_expiry":
                l["outcome"] = "failed"
        r = result(
            r.report,
            backend="broken-ttl-claim",
            failures={"embedded::ttl_expiry": "thread 'embedded::ttl_expiry' panicked:\nexpired item returned"},
        )
        m = acc.build_matrix([healthy(), r])
        self.assertFalse(m.ok)
        run = m.runs[1]
        self.assertEqual(run.backend, "broken-ttl-claim")
        self.assertEqual(run.cells["ttl"], acc.CELL_FAIL)
        self.assertEqual(run.cells["core"], acc.CELL_PASS)
        self.assertEqual(run.cells["scan"], acc.CELL_PASS)
        self.assertIn("broken-ttl-claim/embedded ttl: embedded::ttl_expiry", m.reason())
        (frun, case), = m.failures()
        self.assertEqual(case.output_tail[-1], "expired item returned")

    def test_unclaimed_and_not_applicable_is_na_and_passes(self):
        claimed = ["scan", "conditional_write", "durable"]
        m = acc.build_matrix([healthy(backend="sqlite", claimed=claimed)])
        self.assertTrue(m.ok, m.reason())
        cells = m.runs[0].cells
        self.assertEqual(cells["ttl"], acc.CELL_NA)
        self.assertEqual(cells["transactions"], acc.CELL_NA)
        self.assertEqual(cells["scan"], acc.CELL_PASS)
        self.assertEqual(cells["durable"], acc.CELL_NOT_TESTED)
        self.assertEqual(m.totals()[acc.NOT_APPLICABLE], 4)

    def test_refusal_check_that_failed_fails(self):
        r = healthy(claimed=["scan"])
        for l in r.report:
            if l["case"] == "ttl_expiry":
                l["outcome"] = "failed"
        m = acc.build_matrix([result(r.report)])
        self.assertFalse(m.ok)
        self.assertEqual(m.runs[0].cells["ttl"], acc.CELL_FAIL)

    def test_missing_line_with_binary_failed_counts_as_failed(self):
        other = healthy(backend="sqlite")
        r = healthy()
        r.report = [l for l in r.report if l["case"] != "ttl_expiry"]
        verdicts = {f"embedded::{l['case']}": "ok" for l in r.report}
        verdicts["embedded::ttl_expiry"] = "FAILED"
        m = acc.build_matrix([other, result(r.report, verdicts=verdicts)])
        self.assertFalse(m.ok)
        run = m.runs[1]
        case = next(c for c in run.cases if c.case == "ttl_expiry")
        self.assertEqual(case.outcome, acc.FAILED)
        self.assertEqual(case.source, "binary")
        # placed by what the other run reported for the same case
        self.assertEqual(case.column, "ttl")
        self.assertEqual(run.cells["ttl"], acc.CELL_FAIL)

    def test_crash_leaves_listed_cases_failed(self):
        r = healthy()
        done = r.report[:3]
        verdicts = {f"embedded::{l['case']}": "ok" for l in done}
        listed = [f"embedded::{l['case']}" for l in r.report]
        m = acc.build_matrix([result(done, verdicts=verdicts, listed=listed, exit_code=-6,
                                     stderr="fatal runtime error: stack overflow\n")])
        self.assertFalse(m.ok)
        run = m.runs[0]
        missing = [c for c in run.cases if c.source == "missing"]
        self.assertEqual(len(missing), len(listed) - 3)
        self.assertTrue(all(c.outcome == acc.FAILED for c in missing))
        self.assertIn("SIGABRT", missing[0].detail)
        self.assertIn("stack overflow", "\n".join(missing[0].output_tail))
        # unknown capability (no other run reported these cases): under core
        self.assertEqual(run.cells["core"], acc.CELL_FAIL)

    def test_passed_in_binary_without_report_line_fails(self):
        r = healthy()
        verdicts = {f"embedded::{l['case']}": "ok" for l in r.report}
        m = acc.build_matrix([result(r.report[1:], verdicts=verdicts)])
        self.assertFalse(m.ok)
        case = next(c for c in m.runs[0].cases if c.case == "put_get_roundtrip")
        self.assertIn("no report line", case.detail)

    def test_report_passed_but_binary_failed_is_failed(self):
        r = healthy()
        verdicts = {f"embedded::{l['case']}": "ok" for l in r.report}
        verdicts["embedded::scan_pages"] = "FAILED"
        m = acc.build_matrix([result(r.report, verdicts=verdicts)])
        self.assertFalse(m.ok)
        self.assertEqual(m.runs[0].cells["scan"], acc.CELL_FAIL)

    def test_claimed_but_not_applicable_is_a_failure(self):
        r = healthy()
        for l in r.report:
            if l["case"] == "snapshot_scan":
                l["outcome"] = "not_applicable"
        m = acc.build_matrix([result(r.report)])
        self.assertFalse(m.ok)
        self.assertEqual(m.runs[0].cells["snapshot_reads"], acc.CELL_FAIL)

    def test_nonzero_exit_without_failed_case_fails_the_run(self):
        r = healthy()
        m = acc.build_matrix([result(r.report, exit_code=101)])
        self.assertFalse(m.ok)
        self.assertIn("exit code 101", m.reason())
        self.assertEqual(m.runs[0].cells["core"], acc.CELL_FAIL)
        self.assertEqual(m.runs[0].cells["ttl"], acc.CELL_PASS)

    def test_timeout(self):
        r = healthy()
        listed = [f"embedded::{l['case']}" for l in r.report]
        m = acc.build_matrix([result(r.report[:1], verdicts={}, listed=listed, exit_code=-9, timed_out=True)])
        self.assertFalse(m.ok)
        self.assertIn("timed out", m.reason())
        self.assertEqual(m.totals()[acc.PASSED], 1)

    def test_ignored_cases_do_not_count(self):
        r = healthy()
        verdicts = {f"embedded::{l['case']}": "ok" for l in r.report}
        verdicts["embedded::slow_case"] = "ignored"
        m = acc.build_matrix([result(r.report, verdicts=verdicts)])
        self.assertTrue(m.ok, m.reason())
        self.assertEqual(m.totals()[acc.IGNORED], 1)

    def test_no_case_ran_fails(self):
        m = acc.build_matrix([result([], verdicts={}, listed=[])])
        self.assertFalse(m.ok)
        self.assertIn("no embedded case ran", m.reason())
        self.assertEqual(m.runs[0].cells["core"], acc.CELL_FAIL)
        self.assertEqual(m.runs[0].cells["ttl"], acc.CELL_UNKNOWN)
        self.assertFalse(acc.build_matrix([]).ok)

    def test_claimed_null_when_backend_never_opened(self):
        report = [line("put_get_roundtrip", None, "failed", claimed=None),
                  line("ttl_expiry", "ttl", "failed", claimed=None)]
        m = acc.build_matrix([result(report)])
        run = m.runs[0]
        self.assertIsNone(run.claimed)
        self.assertEqual(run.cells["core"], acc.CELL_FAIL)
        self.assertEqual(run.cells["ttl"], acc.CELL_FAIL)
        self.assertEqual(run.cells["scan"], acc.CELL_UNKNOWN)

    def test_bad_report_line_fails_the_run(self):
        r = healthy()
        m = acc.build_matrix([result(r.report, errors=["report line 3 is not JSON"])])
        self.assertFalse(m.ok)

    def test_unknown_capability_gets_a_column(self):
        r = healthy()
        r.report.append(line("watch_events", "watch", "passed", claimed=ALL_CAPS + ["watch"]))
        for l in r.report:
            l["claimed"] = ALL_CAPS + ["watch"]
        m = acc.build_matrix([result(r.report)])
        self.assertEqual(m.columns[-1], "watch")
        self.assertEqual(m.runs[0].cells["watch"], acc.CELL_PASS)


class Plan(unittest.TestCase):
    def labels(self, *argv):
        return {acc.run_label(t, b, m) for b, m, _, t, _ in acc.plan(acc.parse_args(list(argv)))}

    def test_every_suite_runs_embedded_and_as_pattern_processes(self):
        labels = self.labels()
        for label in ("sqlite/process", "timeseries:memstore/process",
                      "timeseries:postgres/process", "pubsub:nats/process",
                      "pubsub:redis/process", "pubsub:kafka/process",
                      "timeseries:sqlite+kafka/embedded"):
            self.assertIn(label, labels)

    def test_the_kafka_log_row_has_no_process_mode(self):
        self.assertNotIn("timeseries:sqlite+kafka/process", self.labels())

    def test_modes_filter_every_suite(self):
        self.assertTrue(all(l.endswith("/embedded") for l in self.labels("--modes", "embedded")))
        only = self.labels("--modes", "process", "--suites", "pubsub")
        self.assertEqual(only, {"pubsub:nats/process", "pubsub:redis/process", "pubsub:kafka/process"})


class Parsing(unittest.TestCase):
    def test_test_result_lines(self):
        out = (
            "running 3 tests\n"
            "test embedded::a ... ok\n"
            "test embedded::b ... FAILED\n"
            "test embedded::c ... ignored, a deliberately broken fixture\n"
        )
        self.assertEqual(
            acc.parse_test_results(out),
            {"embedded::a": "ok", "embedded::b": "FAILED", "embedded::c": "ignored"},
        )

    def test_failure_sections(self):
        out = libtest_stdout(
            {"embedded::a": "FAILED", "embedded::b": "FAILED"},
            {"embedded::a": "panic a\nline 2", "embedded::b": "panic b"},
        )
        sections = acc.parse_failure_output(out)
        self.assertEqual(sections["embedded::a"], ["panic a", "line 2"])
        self.assertEqual(sections["embedded::b"], ["panic b"])

    def test_list(self):
        self.assertEqual(
            acc.parse_list("embedded::a: test\nprocess::b: test\n\n2 tests, 0 benchmarks\n"),
            ["embedded::a", "process::b"],
        )

    def test_report_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "r.jsonl"
            path.write_text(json.dumps(line("a")) + "\n{not json\n\n" + json.dumps({"x": 1}) + "\n")
            lines, errors = acc.read_report(path)
            self.assertEqual([l["case"] for l in lines], ["a"])
            self.assertEqual(len(errors), 2)
            self.assertEqual(acc.read_report(Path(tmp) / "absent"), ([], []))

    def test_build_messages(self):
        manifests = {"/w/patterns/memstore/Cargo.toml": "pattern-memstore"}
        msgs = [
            '   Compiling pattern-memstore v0.1.0',
            json.dumps({"reason": "compiler-artifact", "manifest_path": "/w/patterns/memstore/Cargo.toml",
                        "target": {"name": "acceptance", "kind": ["test"]}, "profile": {"test": True},
                        "executable": "/t/debug/deps/acceptance-1"}),
            json.dumps({"reason": "compiler-artifact", "manifest_path": "/w/patterns/memstore/Cargo.toml",
                        "target": {"name": "pattern_memstore", "kind": ["lib"]}, "profile": {"test": False},
                        "executable": None}),
            json.dumps({"reason": "compiler-artifact", "manifest_path": "/w/patterns/memstore/Cargo.toml",
                        "target": {"name": "broken_claim", "kind": ["test"]}, "profile": {"test": True},
                        "executable": "/t/debug/deps/broken_claim-2"}),
            json.dumps({"reason": "build-finished", "success": True}),
        ]
        self.assertEqual(
            acc.parse_build_messages(msgs, manifests, {"acceptance", "broken_claim"}),
            {("pattern-memstore", "acceptance"): "/t/debug/deps/acceptance-1",
             ("pattern-memstore", "broken_claim"): "/t/debug/deps/broken_claim-2"},
        )


def failing_matrix():
    r = healthy(backend="broken-ttl-claim")
    for l in r.report:
        if l["case"] == "ttl_expiry":
            l["outcome"] = "failed"
    broken = result(r.report, backend="broken-ttl-claim",
                    failures={"embedded::ttl_expiry": "assertion failed: expired | gone"})
    return acc.build_matrix([healthy(), healthy(mode="process"), broken])


class Formats(unittest.TestCase):
    def test_markdown_table(self):
        md = acc.render_markdown(failing_matrix())
        lines = md.splitlines()
        header = "| backend / mode | core | ttl | scan | conditional_write | transactions | snapshot_reads | idempotency | durable |"
        self.assertIn(header, lines)
        i = lines.index(header)
        self.assertEqual(lines[i + 1], "|---|" + "---|" * 8)
        self.assertEqual(lines[i + 2], "| memstore / embedded | pass | pass | pass | pass | pass | pass | pass | - |")
        self.assertEqual(lines[i + 3], "| memstore / process | pass | pass | pass | pass | pass | pass | pass | - |")
        self.assertEqual(lines[i + 4], "| broken-ttl-claim / embedded | pass | **FAIL** | pass | pass | pass | pass | pass | - |")
        self.assertIn("**Result: FAIL**", md)
        self.assertIn("## Failing cases", md)
        # the output tail is a code block under the failing case
        self.assertIn("  assertion failed: expired | gone", lines)

    def test_json_schema(self):
        doc = acc.to_json(failing_matrix())
        json.dumps(doc)  # serialisable
        self.assertEqual(doc["schema"], "prism-acceptance/1")
        self.assertIs(doc["ok"], False)
        self.assertIsInstance(doc["reason"], str)
        self.assertEqual(doc["columns"][0], "core")
        self.assertEqual(set(doc["totals"]), {"passed", "failed", "not_applicable", "ignored"})
        self.assertEqual(len(doc["runs"]), 3)
        for run in doc["runs"]:
            self.assertEqual(
                set(run),
                {"suite", "backend", "mode", "package", "target", "ok", "exit_code", "timed_out", "seconds",
                 "claimed", "cells", "counts", "errors", "warnings", "cases"},
            )
            self.assertEqual(list(run["cells"]), doc["columns"])
            for value in run["cells"].values():
                self.assertIn(value, {"pass", "fail", "n/a", "not_tested", "not_claimed", "unknown"})
            for case in run["cases"]:
                self.assertEqual(
                    set(case),
                    {"test", "case", "capability", "column", "outcome", "seconds", "source", "detail",
                     "output_tail"},
                )
        broken = doc["runs"][2]
        self.assertEqual((broken["backend"], broken["ok"], broken["cells"]["ttl"]), ("broken-ttl-claim", False, "fail"))
        ok = acc.to_json(acc.build_matrix([healthy()]))
        self.assertIs(ok["ok"], True)
        self.assertIsNone(ok["reason"])

    def test_terminal(self):
        m = failing_matrix()
        plain = acc.render_terminal(m, colour=False)
        self.assertNotIn("\033[", plain)
        self.assertIn("broken-ttl-claim/embedded", plain)
        self.assertIn("FAIL", plain)
        self.assertIn("embedded::ttl_expiry", plain)
        self.assertIn("acceptance: ", plain.splitlines()[-1])
        self.assertRegex(plain.splitlines()[-1], r"^acceptance: \d+ passed, 1 failed, 0 skipped$")
        self.assertIn("\033[", acc.render_terminal(m, colour=True))


FAKE_BINARY = r'''#!/usr/bin/env python3
"""A stand-in for a libtest acceptance binary, driven by $FAKE_SPEC."""
import json, os, subprocess, sys, time
spec = json.load(open(os.environ["FAKE_SPEC"]))
args = sys.argv[1:]
flt = next((a for a in args if not a.startswith("-") and a not in ("terse", "never")), "")
ignored = "--ignored" in args
cases = [c for c in spec["cases"] if flt in c["name"] and bool(c.get("ignore")) == ignored]
if "--list" in args:
    for c in cases:
        print(f"{c['name']}: test")
    sys.exit(0)
report = os.environ.get("PRISM_ACCEPTANCE_REPORT")
print(f"\nrunning {len(cases)} tests", flush=True)
failed = []
for c in cases:
    if c.get("leak"):
        subprocess.Popen(["sleep", "30"])
    if c.get("hang"):
        time.sleep(60)
    if c.get("crash"):
        sys.stdout.flush()
        os.abort()
    mode, case = c["name"].split("::", 1)
    if report:
        with open(report, "a") as f:
            f.write(json.dumps({"suite": "keyvalue", "backend": spec["backend"], "mode": mode,
                                "case": case, "capability": c.get("capability"),
                                "claimed": spec["claimed"], "outcome": c["outcome"],
                                "seconds": 0.001}) + "\n")
    verdict = "FAILED" if c["outcome"] == "failed" else "ok"
    if verdict == "FAILED":
        failed.append(c["name"])
    print(f"test {c['name']} ... {verdict}", flush=True)
if failed:
    print("\nfailures:\n")
    for name in failed:
        print(f"---- {name} stdout ----\nthread '{name}' panicked at the fake\n")
    print("failures:\n" + "\n".join("    " + n for n in failed))
print(f"\ntest result: {'FAILED' if failed else 'ok'}. {len(cases) - len(failed)} passed; {len(failed)} failed")
sys.exit(101 if failed else 0)
'''


class FakeBinary(unittest.TestCase):
    """run_job and run_all on a script that behaves like a test binary."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)
        self.exe = self.dir / "fake-acceptance"
        self.exe.write_text(FAKE_BINARY)
        self.exe.chmod(self.exe.stat().st_mode | stat.S_IXUSR)

    def tearDown(self):
        self.tmp.cleanup()

    def run_fake(self, cases, backend="memstore", claimed=("ttl", "scan"), mode="embedded",
                 ignored=False, timeout=30.0):
        spec = self.dir / "spec.json"
        spec.write_text(json.dumps({"backend": backend, "claimed": list(claimed), "cases": cases}))
        env = dict(os.environ, FAKE_SPEC=str(spec))
        work = self.dir / "work"
        work.mkdir(exist_ok=True)
        j = job(backend, mode, ignored=ignored, exe=str(self.exe))
        return acc.run_job(j, work, timeout, env=env)

    def test_passing_run(self):
        res = self.run_fake([
            {"name": "embedded::put_get_roundtrip", "outcome": "passed"},
            {"name": "embedded::ttl_expiry", "capability": "ttl", "outcome": "passed"},
            {"name": "embedded::mutate_atomicity", "capability": "transactions", "outcome": "not_applicable"},
            {"name": "process::put_get_roundtrip", "outcome": "failed"},
        ])
        self.assertEqual(res.exit_code, 0)
        self.assertEqual(len(res.report), 3)
        self.assertEqual(len(res.listed), 3)
        m = acc.build_matrix([res])
        self.assertTrue(m.ok, m.reason())
        self.assertEqual(m.runs[0].cells["transactions"], acc.CELL_NA)

    def test_crash_mid_run(self):
        res = self.run_fake([
            {"name": "embedded::put_get_roundtrip", "outcome": "passed"},
            {"name": "embedded::ttl_expiry", "capability": "ttl", "outcome": "passed", "crash": True},
            {"name": "embedded::scan_pages", "capability": "scan", "outcome": "passed"},
        ])
        self.assertLess(res.exit_code, 0)
        m = acc.build_matrix([res])
        self.assertFalse(m.ok)
        self.assertEqual(m.runs[0].count(acc.FAILED), 2)
        self.assertEqual(m.runs[0].count(acc.PASSED), 1)

    def test_timeout_kills_the_run(self):
        start = time.monotonic()
        res = self.run_fake([
            {"name": "embedded::put_get_roundtrip", "outcome": "passed"},
            {"name": "embedded::ttl_expiry", "capability": "ttl", "outcome": "passed", "hang": True},
        ], timeout=3)
        self.assertLess(time.monotonic() - start, 20)
        self.assertTrue(res.timed_out)
        m = acc.build_matrix([res])
        self.assertFalse(m.ok)
        self.assertIn("timed out", m.reason())

    def test_leaked_child_does_not_hold_the_run(self):
        start = time.monotonic()
        res = self.run_fake([
            {"name": "embedded::put_get_roundtrip", "outcome": "passed", "leak": True},
        ])
        self.assertLess(time.monotonic() - start, 20)
        self.assertEqual(res.exit_code, 0)
        self.assertTrue(res.warnings)

    def test_ignored_fixture_and_parallel_runs(self):
        cases = [
            {"name": "embedded::ttl_expiry", "capability": "ttl", "outcome": "failed", "ignore": True},
            {"name": "embedded::put_get_roundtrip", "outcome": "passed", "ignore": True},
        ]
        spec = self.dir / "spec.json"
        spec.write_text(json.dumps({"backend": "broken-ttl-claim", "claimed": ["ttl"], "cases": cases}))
        os.environ["FAKE_SPEC"] = str(spec)
        try:
            jobs = [job("memstore", "embedded", exe=str(self.exe)),
                    job("broken-ttl-claim", "embedded", ignored=True, exe=str(self.exe))]
            logged = []
            results = acc.run_all(jobs, 2, 30, log=logged.append)
        finally:
            del os.environ["FAKE_SPEC"]
        self.assertEqual(len(logged), 2)
        m = acc.build_matrix(results)
        # without --ignored nothing runs: an empty run is an error too
        self.assertIn("no embedded case ran", " ".join(m.runs[0].errors))
        self.assertEqual(m.runs[1].cells["ttl"], acc.CELL_FAIL)
        self.assertEqual(m.runs[1].cells["core"], acc.CELL_PASS)


class CommandLine(unittest.TestCase):
    def run_cli(self, *args):
        return subprocess.run([sys.executable, str(TOOLING / "acceptance.py"), *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    def test_unknown_backend_is_a_usage_error(self):
        p = self.run_cli("--backends", "memstore,oracle")
        self.assertEqual(p.returncode, 2)
        self.assertIn("oracle", p.stderr)

    def test_unknown_mode_is_a_usage_error(self):
        p = self.run_cli("--modes", "remote")
        self.assertEqual(p.returncode, 2)

    def test_help(self):
        p = self.run_cli("--help")
        self.assertEqual(p.returncode, 0)
        for flag in ("--backends", "--modes", "--format", "--out", "--include-broken-fixture", "-j", "--no-build"):
            self.assertIn(flag, p.stdout)


HAVE_FIXTURE = (ROOT / "patterns/memstore/tests/broken_claim.rs").exists() and (
    ROOT / "patterns/memstore/tests/acceptance.rs"
).exists()


@unittest.skipUnless(HAVE_FIXTURE, "patterns/memstore/tests/{acceptance,broken_claim}.rs do not exist yet")
class EndToEnd(unittest.TestCase):
    def test_broken_fixture_fails_the_runner(self):
        with tempfile.TemporaryDirectory() as out:
            p = subprocess.run(
                [sys.executable, str(TOOLING / "acceptance.py"), "--suites", "keyvalue", "--backends",
                 "memstore", "--modes", "embedded", "--include-broken-fixture", "--format", "json", "--out", out],
                cwd=ROOT, capture_output=True, text=True, timeout=3600,
            )
            self.assertEqual(p.returncode, 1, p.stderr[-4000:])
            doc = json.loads(p.stdout)
            self.assertEqual(json.loads(Path(out, "acceptance.json").read_text()), doc)
            self.assertIn("| broken-ttl-claim / embedded |", Path(out, "acceptance.md").read_text())
        runs = {(r["backend"], r["mode"]): r for r in doc["runs"]}
        self.assertEqual(set(runs), {("memstore", "embedded"), ("broken-ttl-claim", "embedded")})
        broken = runs[("broken-ttl-claim", "embedded")]
        self.assertEqual(broken["cells"]["ttl"], "fail")
        self.assertIn("ttl", broken["claimed"])
        ttl = [c for c in broken["cases"] if c["capability"] == "ttl"]
        self.assertTrue(ttl and all(c["outcome"] == "failed" for c in ttl), ttl)
        # memstore itself passes: the failure is the fixture's alone
        self.assertTrue(runs[("memstore", "embedded")]["ok"], runs[("memstore", "embedded")]["errors"])
        self.assertNotIn("fail", runs[("memstore", "embedded")]["cells"].values())
        self.assertIn("broken-ttl-claim/embedded ttl", p.stderr.strip().splitlines()[-1])


if __name__ == "__main__":
    unittest.main()
