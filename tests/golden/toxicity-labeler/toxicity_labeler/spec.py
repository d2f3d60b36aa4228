"""The task, labels and voters of this labeler.

Rendered by autoannotator-agent: change the inputs and re-render rather than editing by hand.
"""

from .config import LabelerSpec, VoterConfig

SPEC = LabelerSpec(
    name="toxicity-labeler",
    task="label tweets for toxicity",
    labels=("non-toxic", "toxic"),
    text_column="text",
    min_agreement=1.0,
    min_confidence=0.0,
    voters=(
        VoterConfig(
            name="toxic_bert",
            kind="hf-sequence-classifier",
            source="hub:acme/toxic-bert",
            revision="0123456789abcdef0123456789abcdef01234567",
            label_map={"NOT_TOXIC": "non-toxic", "TOXIC": "toxic"},
            weight=1.0,
            options={},
        ),
        VoterConfig(
            name="local_model",
            kind="hf-sequence-classifier",
            source="bundled:models/local_model",
            revision="ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            label_map={"hate": "toxic", "offensive": "toxic", "neither": "non-toxic"},
            weight=2.0,
            options={},
        ),
    ),
)
