"""Rendering the labeler package: literals, determinism, the golden package, the lint gate."""

from __future__ import annotations

import ast
import os
import shutil
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import TemplateError
from agent.packaging.build import build_package
from agent.packaging.lint import format_and_lint
from agent.packaging.render import (
    SOURCE_TREE_ONLY,
    python_literal,
    render_package,
    template_root,
    toml_literal,
)
from agent.packaging.spec import PackageSpec, Provenance, VoterEntry

GOLDEN = Path(__file__).parent / "golden" / "toxicity-labeler"


def make_spec(**changes) -> PackageSpec:
    values = dict(
        name="toxicity-labeler",
        module="toxicity_labeler",
        title="Toxicity labeler (non-toxic, toxic)",
        task="label tweets for toxicity",
        labels=("non-toxic", "toxic"),
        label_descriptions={"non-toxic": "civil text", "toxic": "insults or threats"},
        text_column="text",
        min_agreement=1.0,
        voters=(
            VoterEntry(
                name="toxic_bert",
                kind="hf-sequence-classifier",
                source="hub:acme/toxic-bert",
                revision="0123456789abcdef0123456789abcdef01234567",
                label_map={"NOT_TOXIC": "non-toxic", "TOXIC": "toxic"},
                origin="acme/toxic-bert",
                license="apache-2.0",
            ),
            VoterEntry(
                name="local_model",
                kind="hf-sequence-classifier",
                source="bundled:models/local_model",
                revision="f" * 64,
                label_map={"hate": "toxic", "offensive": "toxic", "neither": "non-toxic"},
                weight=2.0,
                origin="/models/local",
            ),
        ),
        requirements=("numpy==2.0.0", "torch==2.11.0", "transformers==5.0.0"),
        extras={"parquet": ("pyarrow==17.0.0",), "test": ("pytest==9.0.0",)},
        base_image="pytorch/pytorch:2.11.0-cuda12.8-cudnn9-runtime",
        sample_texts=("a kind word", "a rude word"),
        selection_notes=("toxic_bert: agreed with the others on 91% of 200 pilot rows",),
        agent_version="0.1.0",
        template_version="1",
    )
    values.update(changes)
    return PackageSpec(**values)


PROVENANCE = Provenance(
    run_id="20260101-000000-abcdef",
    plan={"task": "label tweets for toxicity", "planner": "rules"},
    data={"path": "/data/tweets.csv", "rows": 40, "sha256": "0" * 64},
    llm=None,
    settings={"min_agreement": 1.0},
)


def rendered_tree(tmp_path: Path, spec: PackageSpec) -> Path:
    folder = tmp_path / "pkg"
    for relative, content in render_package(spec, PROVENANCE).items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    format_and_lint(folder)
    return folder


def tree_files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_python_literal_refuses_what_is_not_a_literal():
    assert python_literal({"a": (1, 2.5, None, True)}) == "{'a': (1, 2.5, None, True)}"
    for bad in (float("nan"), float("inf"), object(), {1: "x"}, Path("/x")):
        with pytest.raises(TemplateError):
            python_literal(bad)


def test_toml_literal_escapes_quotes_and_newlines():
    text = 'he said "hi"\nthen \\ left'
    assert tomllib.loads(f"value = {toml_literal(text)}")["value"] == text


def test_same_spec_renders_byte_identical_files(tmp_path):
    first = tree_files(rendered_tree(tmp_path / "a", make_spec()))
    second = tree_files(rendered_tree(tmp_path / "b", make_spec()))
    assert first == second


def copied_files() -> dict[str, bytes]:
    """Template files copied as they are (not ``*.jinja``), by their path in the package."""
    root = Path(str(template_root()))
    return {
        str(p.relative_to(root)).replace("pkg/", "toxicity_labeler/", 1): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.suffix != ".jinja" and not SOURCE_TREE_ONLY & set(p.parts)
    }


def test_golden_package_has_not_changed(tmp_path):
    """Set UPDATE_GOLDEN=1 to accept an intended change (then review the diff).

    The golden folder keeps what rendering produces (``*.jinja`` outputs, manifest, lock);
    files copied as they are must come out byte-identical to their template source (so the
    template sources are themselves black- and lint-clean).
    """
    everything = tree_files(rendered_tree(tmp_path, make_spec()))
    copied = copied_files()
    for relative, content in copied.items():
        assert everything[relative] == content, f"{relative} changed in the lint gate"
    rendered = {k: v for k, v in everything.items() if k not in copied}
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for relative, content in rendered.items():
            (GOLDEN / relative).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / relative).write_bytes(content)
    assert rendered == tree_files(GOLDEN)


def _keywords(call: ast.Call) -> dict:
    return {k.arg: k.value for k in call.keywords}


def spec_literals(source: str) -> tuple[dict, list[dict]]:
    """The literal values of ``SPEC = LabelerSpec(...)`` and of each ``VoterConfig``."""
    tree = ast.parse(source)
    call = next(node.value for node in tree.body if isinstance(node, ast.Assign))
    top = _keywords(call)
    voters = [
        {name: ast.literal_eval(value) for name, value in _keywords(voter).items()}
        for voter in top.pop("voters").elts
    ]
    return {name: ast.literal_eval(value) for name, value in top.items()}, voters


PIECES = list("ab'\"\\\n\r\t{}%#`$|<>\u00e9\u4e2d\U0001f600") + [
    '"""',
    "'''",
    "{{ spec }}",
    "{% if x %}",
    "__import__('os').system('x')",
    '"); import os #',
]
NASTY = st.lists(st.sampled_from(PIECES), min_size=1, max_size=6).map("".join)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    labels=st.lists(NASTY, min_size=2, max_size=3, unique=True),
    task=NASTY,
    column=NASTY,
    model_id=NASTY,
)
def test_hostile_values_render_to_code_that_parses_and_holds_them_exactly(
    tmp_path_factory, labels, task, column, model_id
):
    voter = VoterEntry(
        name="voter",
        kind="hf-sequence-classifier",
        source=f"hub:{model_id}",
        revision="r",
        label_map=(
            {model_id: labels[0], task: labels[1]} if model_id != task else {model_id: labels[0]}
        ),
        origin=model_id,
    )
    spec = make_spec(
        labels=tuple(labels),
        label_descriptions={label: task for label in labels},
        task=task,
        text_column=column,
        voters=(voter,),
        title=task,
        sample_texts=(task, column),
    )
    files = render_package(spec, PROVENANCE)
    top, voters = spec_literals(files["toxicity_labeler/spec.py"])
    assert top["task"] == task and top["labels"] == tuple(labels) and top["text_column"] == column
    assert voters[0]["source"] == f"hub:{model_id}" and voters[0]["label_map"] == voter.label_map
    test_module = ast.parse(files["tests/test_labeler.py"])
    constants = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in test_module.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant | ast.Tuple)
    }
    assert constants["LABELS"] == tuple(labels) and constants["SAMPLE_TEXTS"] == (task, column)
    assert tomllib.loads(files["pyproject.toml"])["project"]["description"] == task
    ast.parse(files["toxicity_labeler/__init__.py"])
    folder = tmp_path_factory.mktemp("nasty")
    for relative in ("toxicity_labeler/spec.py", "tests/test_labeler.py"):
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(files[relative], encoding="utf-8")
    format_and_lint(folder)


def test_a_broken_template_is_caught_and_nothing_is_promoted(tmp_path):
    skeleton = tmp_path / "skeleton"
    shutil.copytree(template_root(), skeleton)
    broken = skeleton / "pkg" / "spec.py.jinja"
    broken.write_text(broken.read_text().replace("voters=(", "voters=((", 1))
    with pytest.raises(TemplateError, match=r"spec\.py"):
        files = render_package(make_spec(), PROVENANCE, root=skeleton)
        folder = tmp_path / "staged"
        for relative, content in files.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(content)
        format_and_lint(folder)


def test_lint_gate_names_an_unused_import(tmp_path):
    folder = rendered_tree(tmp_path, make_spec())
    engine = folder / "toxicity_labeler" / "engine.py"
    source = engine.read_text().replace("import hashlib\n", "import hashlib\nimport string\n")
    engine.write_text(source)
    with pytest.raises(TemplateError, match=r"engine\.py.*F401"):
        format_and_lint(folder)


def test_build_package_promotes_only_lint_clean_output(tmp_path, monkeypatch):
    def failing_lint(folder):
        raise TemplateError("rendered file is broken")

    monkeypatch.setattr("agent.packaging.build.format_and_lint", failing_lint)
    target = tmp_path / "package"
    with pytest.raises(TemplateError):
        build_package(target, make_spec(voters=make_spec().voters[:1]), PROVENANCE, [])
    assert not target.exists()
