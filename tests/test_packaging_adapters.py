"""A tuned package records its adapters: lock file, manifest, model card, requirements."""

from __future__ import annotations

import json

from agent.packaging.build import installed_adapters, runtime_requirements
from agent.packaging.render import render_package
from tests.test_rendering import PROVENANCE, make_spec

ADAPTER = {
    "version": "v2",
    "path": "adapters/toxic_bert/v2",
    "stage": 2,
    "holdout_accuracy": 0.875,
    "holdout_rows": 40,
    "files": {"adapter_model.safetensors": "a" * 64, "adapter_config.json": "b" * 64},
}


def tuned_spec():
    spec = make_spec()
    first, second = spec.voters
    return spec.model_copy(
        update={"voters": (first.model_copy(update={"adapter": ADAPTER}), second)}
    )


def test_the_lock_and_manifest_pin_the_promoted_adapter_and_the_readme_shows_it():
    files = render_package(tuned_spec(), PROVENANCE)
    lock = json.loads(files["models.lock.json"])
    assert lock["voters"][0]["adapter"] == ADAPTER
    assert "adapter" not in lock["voters"][1]
    manifest = json.loads(files["manifest.json"])
    assert manifest["package"]["voters"][0]["adapter"] == ADAPTER
    readme = files["README.md"]
    assert "| toxic\\_bert | v2 | 2 | 0.875 on 40 rows |" in readme


def test_an_untuned_package_says_so_and_pins_no_adapter():
    files = render_package(make_spec(), PROVENANCE)
    assert all("adapter" not in v for v in json.loads(files["models.lock.json"])["voters"])
    assert "No voter is fine-tuned yet." in files["README.md"]


def test_installed_adapters_reads_current_versions(tmp_path):
    folder = tmp_path / "adapters" / "toxic_bert"
    (folder / "v1").mkdir(parents=True)
    (folder / "v2").mkdir()
    record = {"stage": 2, "holdout_accuracy_after": 0.875, "holdout_rows": 40}
    record["files"] = ADAPTER["files"]
    (folder / "v2" / "adapter.json").write_text(json.dumps(record))
    (folder / "CURRENT").write_text("v2\n")
    (tmp_path / "adapters" / "untuned").mkdir()
    assert installed_adapters(tmp_path) == {"toxic_bert": ADAPTER}
    assert installed_adapters(tmp_path / "nothing") == {}


def test_peft_is_required_only_by_a_tuned_package():
    assert not any(r.startswith("peft") for r in runtime_requirements([]))
    assert any(r.startswith("peft==") for r in runtime_requirements([], tuned=True))


def test_a_run_that_will_fine_tune_carries_peft_before_any_adapter_is_promoted():
    """Its stages run where the package runs (the package's own Docker image included), so
    PEFT is pinned from the first render, not only once an adapter exists."""
    from agent.packaging.build import build_spec
    from agent.settings import Settings
    from tests.support.fakes import TOXICITY_PLAN
    from tests.support.run_states import hub_voter

    voters = [hub_voter("toxic_a")]
    plain = build_spec(TOXICITY_PLAN, voters, Settings())
    tuning = build_spec(TOXICITY_PLAN, voters, Settings(finetune_stages=2))
    assert not any(r.startswith("peft") for r in plain.requirements)
    assert any(r.startswith("peft==") for r in tuning.requirements)
