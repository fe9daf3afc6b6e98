"""The `confscope` entry point imports pandas without pyarrow (analyzer/cli/startup.py); parquet
still works there, and `main(argv)` / the library leave pandas as it is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import REPO

PROBE = """
import sys
{setup}
import pandas as pd
print("pyarrow" in sys.modules, pd.Series(["a", None]).dtype)
"""


def _probe(setup: str) -> str:
    code = PROBE.format(setup=setup)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout


def test_console_entry_hides_pyarrow_and_the_library_does_not() -> None:
    hidden = _probe("from analyzer.cli.startup import import_pandas_without_pyarrow; import_pandas_without_pyarrow()")
    assert hidden.split()[0] == "False"
    plain = _probe("import analyzer.cli.main, analyzer.session.build")
    assert plain.split()[0] == "True"  # pandas 3 with pyarrow installed loads it itself


def test_console_flows_writes_parquet_and_csv(tmp_path: Path) -> None:
    from analyzer.capture.demo import write_demo_capture

    cap = write_demo_capture(tmp_path / "demo.pcap")
    out = tmp_path / "f.parquet"
    run = [sys.executable, "-m", "analyzer", "flows", str(cap)]
    subprocess.run([*run, "--format", "parquet", "-o", str(out)], cwd=REPO, check=True, capture_output=True)
    csv = subprocess.run(run, cwd=REPO, check=True, capture_output=True).stdout.decode()
    table = pq.read_table(out).to_pandas()
    assert len(table) == csv.count("\n") - 1 > 3
    assert list(table["client_ip"]) == [line.split(",")[3] for line in csv.splitlines()[1:]]
