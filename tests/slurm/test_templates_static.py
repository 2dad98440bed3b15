"""The sbatch templates as files: valid bash, documented, configurable (no SLURM needed)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import ROOT

TEMPLATES = sorted((ROOT / "slurm").glob("*.sbatch"))


def test_the_templates_the_issue_asks_for_exist():
    names = {p.name for p in TEMPLATES}
    assert {"single_node.sbatch", "multi_node.sbatch", "preemptible.sbatch",
            "array_sweep.sbatch", "cpu.sbatch"} <= names, names


@pytest.mark.parametrize("template", TEMPLATES, ids=[p.name for p in TEMPLATES])
def test_template_is_valid_documented_and_configurable(template):
    text = template.read_text()
    assert text.startswith("#!/bin/bash\n")
    subprocess.run(["bash", "-n", str(template)], check=True, timeout=30)
    header = text.split("#SBATCH", 1)[0]
    assert "When:" in header and "Variables" in header and "Submit" in header, template.name
    assert re.search(r"^# module load ", text, re.M), "no commented module block"
    for var in ("CONFIG", "BACKEND", "VENV"):
        assert re.search(rf"\b{var}=\${{{var}", text) or f"{var}S=" in text or \
            f"${{{var}S:-${{{var}" in text, f"{var} is not taken from the environment"
    assert '"$@"' in text, "extra arguments are not passed through"
    assert "USR1" not in re.sub(r"#.*", "", text), "SIGUSR1 is NCCL's; use USR2"


def test_preemptible_template_requeues_on_exit_75():
    text = (ROOT / "slurm" / "preemptible.sbatch").read_text()
    assert "#SBATCH --requeue" in text
    assert re.search(r"^#SBATCH --signal=B:USR2@\d+$", text, re.M)
    assert "--resume auto" in text
    assert "rc == 75" in text and 'scontrol requeue "$SLURM_JOB_ID"' in text
    assert "trap 'forward_stop USR2' USR2" in text


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
@pytest.mark.parametrize("script", [*TEMPLATES, ROOT / "scripts" / "slurm_cluster.sh"],
                         ids=lambda p: p.name)
def test_shellcheck(script):
    # SC2086: $SRUN_ARGS/$MPIRUN_ARGS are split on purpose; SC1091: the venv's activate script
    res = subprocess.run(["shellcheck", "-S", "warning", "-e", "SC2086,SC1091", str(script)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout
