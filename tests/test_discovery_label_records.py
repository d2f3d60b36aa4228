"""A Hub model whose labels the LLM mapped can be named again with ``--model``.

Discovery records the LLM's mapping beside the Hub records; a later ``--model`` naming that
model (with an LLM that would now answer differently, or with none at all) maps it the same
way, and the model card says where the map came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.numpy import save_file

from agent.context import RunContext
from agent.errors import UserInputError
from agent.hub.records import HubRecords
from agent.nodes.resolve_models import resolve_models
from agent.nodes.search_models import screen
from agent.settings import Settings
from agent.state import DatasetInfo, RunState, TaskLabel
from sandbox import make_sandbox
from tests.support.fakes import TOXICITY_PLAN, FakeHub, FakeLLM, RecordingReporter

PLAN = TOXICITY_PLAN
REPO = "acme/civility"
MAPPED = {"civil": "non-toxic", "uncivil": "toxic"}

pytestmark = pytest.mark.filterwarnings("ignore:sandbox isolation is off")


class RecordingHub(FakeHub):
    """A :class:`FakeHub` that serves config.json alone and keeps records, like ``HfHub``."""

    def __init__(self, cache_dir: Path, records_root: Path) -> None:
        super().__init__(cache_dir)
        self.records = HubRecords(records_root)

    def read_config(self, repo_id: str, revision: str) -> dict:
        return json.loads((self.models[repo_id][1] / "config.json").read_text())


@pytest.fixture
def hub(tmp_path: Path) -> RecordingHub:
    folder = tmp_path / "civility"
    folder.mkdir()
    config = {"model_type": "bert", "id2label": {"0": "civil", "1": "uncivil"}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").write_text("{}")
    save_file(
        {"classifier.weight": np.zeros((2, 4), dtype=np.float32)}, folder / "model.safetensors"
    )
    hub = RecordingHub(tmp_path / "hf-cache", tmp_path / "hub-records")
    hub.add(REPO, folder, downloads=10)
    return hub


def mapping_answer(mapping: dict[str, str]) -> dict:
    return {"mapping": [{"model_label": k, "task_label": v} for k, v in mapping.items()]}


def context_for(hub: RecordingHub, llm: FakeLLM | None, **settings) -> RunContext:
    return RunContext(
        Settings(sandbox="none", **settings),
        make_sandbox("none"),
        RecordingReporter(),
        llm=llm,
        hub=hub,
    )


def named(hub: RecordingHub, llm: FakeLLM | None, tmp_path: Path):
    """``resolve_models`` for ``--model acme/civility``: the candidate it produced."""
    dataset = DatasetInfo(path="d.csv", format="csv", columns=("text",), rows=1, sha256="0")
    state = RunState(
        task=PLAN.task,
        data_path="d.csv",
        dataset=dataset,
        run_id="run",
        run_dir=str(tmp_path),
        plan=PLAN,
    )
    context = context_for(hub, llm, models=(REPO,))
    [voter] = resolve_models(state, SimpleNamespace(context=context))["candidates"]
    return voter, context


def test_a_model_the_llm_mapped_in_discovery_is_mapped_the_same_when_named(tmp_path, hub):
    llm = FakeLLM()
    llm.enqueue(mapping_answer(MAPPED))
    _, mapping, _ = screen(hub.models[REPO][0], PLAN, context_for(hub, llm))
    assert mapping.mapping == MAPPED

    # No LLM now (say, no key on this machine), then one that would map it the other way.
    without_llm, context = named(hub, None, tmp_path)
    contrary = FakeLLM()
    contrary.enqueue(mapping_answer({"civil": "toxic", "uncivil": "non-toxic"}))
    with_llm, _ = named(hub, contrary, tmp_path)

    assert without_llm.label_map == with_llm.label_map == MAPPED
    assert contrary.history == []
    assert "mapped by the LLM (search_models/v1, fake-llm) in an earlier run" in (
        without_llm.label_map_note
    )
    assert any("as the LLM mapped them before" in info for info in context.reporter.infos)


def test_a_named_model_is_mapped_by_the_llm_and_recorded_when_nothing_is_recorded(tmp_path, hub):
    llm = FakeLLM()
    llm.enqueue(mapping_answer(MAPPED))

    voter, _ = named(hub, llm, tmp_path)
    again, _ = named(hub, None, tmp_path)

    assert voter.label_map == again.label_map == MAPPED
    assert voter.label_map_note == "its labels were mapped by the LLM (search_models/v1, fake-llm)"
    assert len(llm.history) == 1


def test_without_a_record_or_an_llm_the_named_model_is_refused_with_the_reason(tmp_path, hub):
    with pytest.raises(UserInputError, match="its label 'civil' matches none"):
        named(hub, None, tmp_path)


def test_a_record_for_other_task_labels_is_not_used(tmp_path, hub):
    llm = FakeLLM()
    llm.enqueue(mapping_answer(MAPPED))
    named(hub, llm, tmp_path)
    other = PLAN.model_copy(update={"labels": (TaskLabel(name="polite"), TaskLabel(name="rude"))})
    contrary = FakeLLM()
    contrary.enqueue(mapping_answer({"civil": "polite", "uncivil": "rude"}))

    _, mapping, note = screen(hub.models[REPO][0], other, context_for(hub, contrary))

    assert mapping.mapping == {"civil": "polite", "uncivil": "rude"}
    assert len(contrary.history) == 1 and "earlier run" not in note


@pytest.mark.parametrize(
    "change",
    [
        {"task": "Is this comment about the weather?"},
        {"labels": (PLAN.labels[0].model_copy(update={"description": "rain"}),) + PLAN.labels[1:]},
    ],
    ids=["task sentence", "label definition"],
)
def test_a_record_for_the_same_label_names_with_another_meaning_is_not_used(tmp_path, hub, change):
    llm = FakeLLM()
    llm.enqueue(mapping_answer(MAPPED))
    named(hub, llm, tmp_path)
    other = PLAN.model_copy(update=change)
    again = FakeLLM()
    again.enqueue(mapping_answer({"civil": "toxic", "uncivil": "non-toxic"}))

    _, mapping, note = screen(hub.models[REPO][0], other, context_for(hub, again))

    assert mapping.mapping == {"civil": "toxic", "uncivil": "non-toxic"}
    assert len(again.history) == 1 and "earlier run" not in note


def test_a_record_of_another_llm_is_not_used_by_an_llm_but_is_without_one(tmp_path, hub):
    llm = FakeLLM()
    llm.enqueue(mapping_answer(MAPPED))
    named(hub, llm, tmp_path)
    other_llm = FakeLLM("another-model")
    other_llm.enqueue(mapping_answer(MAPPED))

    _, _, note = screen(hub.models[REPO][0], PLAN, context_for(hub, other_llm))
    without_llm, _ = named(hub, None, tmp_path)

    assert len(other_llm.history) == 1 and "earlier run" not in note
    assert without_llm.label_map == MAPPED
