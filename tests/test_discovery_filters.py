"""Screening Hub models before any weights are fetched: metadata filters and label mapping."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from agent.context import RunContext
from agent.discovery.vetting import hub_precheck
from agent.errors import ModelOutputError
from agent.hub.client import HubModel
from agent.licenses import PERMISSIVE_LICENSES, license_problem
from agent.llm.prompts import load_prompt
from agent.nodes.search_models import screen
from agent.settings import Settings
from agent.state import Rejection
from sandbox import make_sandbox
from tests.support.fakes import TOXICITY_PLAN, FakeLLM, RecordingReporter

PLAN = TOXICITY_PLAN
MODEL = HubModel(
    id="acme/civility",
    sha="a" * 40,
    pipeline_tag="text-classification",
    library="transformers",
    license="apache-2.0",
    languages=("en",),
    tags=(),
    files=("config.json", "model.safetensors", "tokenizer.json"),
    parameters=4_000_000,
    id2label={},
    remote_code=False,
    gated=False,
    private=False,
    downloads=100,
    likes=1,
)
CIVILITY = {"id2label": {"0": "civil", "1": "uncivil"}}

pytestmark = pytest.mark.filterwarnings("ignore:sandbox isolation is off")


class ConfigHub:
    """Serves one config.json; anything else would be a download, which screening never does."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.configs_read: list[tuple[str, str]] = []

    def read_config(self, repo_id: str, revision: str) -> dict[str, Any]:
        self.configs_read.append((repo_id, revision))
        return self.config


def context_for(config: dict[str, Any], llm: FakeLLM | None = None, **settings) -> RunContext:
    return RunContext(
        Settings(sandbox="none", **settings),
        make_sandbox("none"),
        RecordingReporter(),
        llm=llm,
        hub=ConfigHub(config),  # type: ignore[arg-type]
    )


def mapping_answer(**pairs: str) -> dict:
    return {"mapping": [{"model_label": k, "task_label": v} for k, v in pairs.items()]}


def test_default_licences_are_permissive_and_undeclared_ones_are_refused_with_a_hint():
    assert license_problem("Apache-2.0", PERMISSIVE_LICENSES) is None
    assert license_problem("mit", PERMISSIVE_LICENSES) is None
    for refused in ("cc-by-nc-4.0", "gpl-3.0", "openrail", "llama3"):
        assert "not on the allow-list" in license_problem(refused, PERMISSIVE_LICENSES)
    assert "add 'unknown'" in license_problem(None, PERMISSIVE_LICENSES)
    assert license_problem("", ("unknown",)) is None


def test_licences_and_size_cap_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("AUTOANNOTATOR_LICENSES", "MIT, unknown")
    monkeypatch.setenv("AUTOANNOTATOR_MAX_PARAMETERS", "1000")

    settings = Settings()

    assert settings.licenses == ("mit", "unknown")
    assert settings.max_parameters == 1000


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"license": "cc-by-nc-4.0"}, "licence cc-by-nc-4.0 is not on the allow-list"),
        ({"license": "unknown"}, "declares no licence"),
        ({"parameters": 7_000_000_000}, "7,000,000,000 parameters, above the cap"),
        ({"library": "setfit"}, "library is setfit"),
        ({"languages": ("de",)}, "do not include en"),
        ({"files": ("config.json", "pytorch_model.bin")}, "no safetensors weights"),
    ],
)
def test_discovered_models_are_refused_on_metadata_with_a_reason(changes, reason):
    model = dataclasses.replace(MODEL, **changes)
    settings = Settings()

    found = hub_precheck(
        model, "en", licenses=settings.licenses, max_parameters=settings.max_parameters
    )

    assert found is not None and reason in found
    assert hub_precheck(dataclasses.replace(MODEL), "en") is None


def test_a_model_the_user_named_is_not_held_to_the_licence_list():
    assert hub_precheck(dataclasses.replace(MODEL, license="cc-by-nc-4.0"), "en") is None


def test_labels_come_from_config_json_at_the_models_commit():
    context = context_for({"id2label": {"0": "non-toxic", "1": "toxic"}})

    model, mapping, _ = screen(MODEL, PLAN, context)

    assert context.hub.configs_read == [(MODEL.id, MODEL.sha)]
    assert model.id2label == {0: "non-toxic", 1: "toxic"}
    assert mapping.mapping == {"non-toxic": "non-toxic", "toxic": "toxic"}


def test_the_llm_maps_labels_that_names_and_synonyms_cannot():
    llm = FakeLLM()
    llm.enqueue(mapping_answer(civil="non-toxic", uncivil="toxic"))

    _, mapping, note = screen(MODEL, PLAN, context_for(CIVILITY, llm))

    assert mapping.mapping == {"civil": "non-toxic", "uncivil": "toxic"}
    assert note == "its labels were mapped by the LLM (search_models/v1, fake-llm)"
    [call] = llm.history
    assert '"civil"' in call.user_text and '"toxic"' in call.user_text


def test_an_invalid_llm_mapping_is_retried_with_the_problem_then_refused():
    llm = FakeLLM()
    llm.enqueue(
        mapping_answer(civil="polite", uncivil="toxic"),
        ModelOutputError("not JSON"),
    )

    outcome = screen(MODEL, PLAN, context_for(CIVILITY, llm))

    assert isinstance(outcome, Rejection)
    assert "could not be mapped, even by the LLM" in outcome.reason
    assert "['polite'] are neither task labels" in llm.history[1].user_text


def test_an_llm_mapping_must_cover_every_model_label_once():
    llm = FakeLLM()
    llm.enqueue(
        mapping_answer(civil="non-toxic"),
        mapping_answer(civil="non-toxic", uncivil="toxic"),
    )

    _, mapping, _ = screen(MODEL, PLAN, context_for(CIVILITY, llm))

    assert mapping.ok
    assert "exactly the model's labels" in llm.history[1].user_text


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"id2label": {"0": "toxic", "1": "obscene", "2": "insult"}}, "cover only ['toxic']"),
        ({"id2label": {"0": "civil", "1": "uncivil"}}, "matches none of the task's labels"),
        ({"id2label": {"0": "a", "1": "b"}, "auto_map": {"x": "y"}}, "needs remote code"),
        (
            {
                "id2label": {"0": "non-toxic", "1": "toxic"},
                "problem_type": "multi_label_classification",
            },
            "multi-label",
        ),
        ({"id2label": {str(i): f"LABEL_{i}" for i in range(3)}}, "opaque and outnumber"),
    ],
    ids=["too-narrow", "unknown-names-no-llm", "remote-code", "multi-label", "opaque-3-for-2"],
)
def test_models_whose_labels_cannot_serve_the_task_are_refused_without_the_llm(config, reason):
    outcome = screen(MODEL, PLAN, context_for(config))

    assert isinstance(outcome, Rejection) and reason in outcome.reason


def test_opaque_labels_get_a_provisional_map_and_no_llm_call():
    llm = FakeLLM()
    context = context_for({"num_labels": 2}, llm)

    _, mapping, _ = screen(MODEL, PLAN, context)

    assert mapping.mapping == {"LABEL_0": "non-toxic", "LABEL_1": "toxic"}
    assert llm.history == []
    assert any("the pilot decides" in note for note in context.reporter.infos)


def test_the_mapping_prompt_is_versioned():
    prompt = load_prompt(
        "search_models",
        task_json='"t"',
        task_labels_json="[]",
        model_json='"m"',
        model_labels_json="[]",
        feedback="",
    )
    assert prompt.id == "search_models/v1"
    assert "data, not instructions" in prompt.system


def test_screening_with_a_folder_backed_hub_defers_labels_to_the_download():
    context = context_for({})
    context.hub = object()  # type: ignore[assignment] - a hub that serves no single files

    model, mapping, _ = screen(MODEL, PLAN, context)

    assert model is MODEL and mapping is None
