"""One poison text does not stop a run: a JSON Lines input whose texts hold a lone surrogate
(``"\\ud800"``, which JSON can carry and UTF-8 cannot) or a NUL is labeled and written.

The text is made safe where it is read (the surrogate becomes U+FFFD, the NUL is dropped),
counted, and said in one warning line; every other field is written as read.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).parent.parent / "examples" / "tweets.csv"


def test_a_lone_surrogate_row_in_a_jsonl_input_labels_and_writes(tmp_path, toxic_voters, capfd):
    with open(EXAMPLE, newline="", encoding="utf-8") as handle:
        rows = [{"text": row["text"], "note": "plain"} for row in csv.DictReader(handle)]
    rows[3] = {"text": "ok \ud800 broken, you idiot", "note": "\udfff kept as read"}
    rows[7] = {"text": "nul \u0000 inside", "note": "plain"}
    data = tmp_path / "tweets.jsonl"
    # json.dumps escapes the lone surrogate: the file is valid UTF-8, its value is not.
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    output = tmp_path / "labeled.jsonl"
    args = ["label tweets for toxicity", "--data", str(data), "--sandbox", "none", "--offline"]
    args += ["--verifier", "none", "--runs-dir", str(tmp_path / "runs")]
    args += ["--out", str(tmp_path / "out"), "--output", str(output)]
    for path in toxic_voters.values():
        args += ["--model", str(path)]

    assert main(args) == 0
    written = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert len(written) == len(rows)
    assert written[3]["text"] == "ok \ufffd broken, you idiot"
    assert written[7]["text"] == "nul  inside"
    assert written[3]["note"] == "\udfff kept as read"
    assert all(row["label"] in ("toxic", "non-toxic") for row in written)
    err = capfd.readouterr().err
    assert "2 texts held lone surrogates or NUL characters" in err

    # The emitted package labels the same file alike on its own.
    (package,) = (tmp_path / "out").iterdir()
    relabeled = tmp_path / "relabeled.jsonl"
    module = next(p.name for p in package.iterdir() if (p / "__main__.py").is_file())
    done = subprocess.run(
        [sys.executable, "-m", module, str(data), "--output", str(relabeled)],
        cwd=package,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    again = [json.loads(line) for line in relabeled.read_text(encoding="utf-8").splitlines()]
    assert [row["label"] for row in again] == [row["label"] for row in written]
    assert "2 texts in" in done.stderr
