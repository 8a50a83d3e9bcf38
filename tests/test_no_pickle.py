"""What our Rasa components learn is stored without pickle (nlu/components/pack_trained.py).

A model archive is a file someone could swap, and unpickling runs code. Each component is trained
on the real locale packs, stored and loaded through Rasa's model storage, and must answer exactly
as before storing; a pickle in the archive is refused, never opened.
"""

from __future__ import annotations

import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.training_data.message import Message

from bot import locale_packs
from nlu.components.commands import CommandRecognizer
from nlu.components.danger import DangerDetectorComponent
from nlu.components.entities import GazetteerEntityExtractor
from nlu.components.language import LanguageIdentifierComponent
from nlu.components.pack_trained import OutdatedModelError
from nlu.script import normalize

COMPONENTS = [CommandRecognizer, GazetteerEntityExtractor, LanguageIdentifierComponent]

# Written for this test: each pack's language, native and romanized, with countries, languages,
# case references, menu numbers and command words.
MESSAGES = [
    "agent took 4 lakh for Malaysia visa, I speak english",
    "boss not giving salary 2 month",
    "skip",
    "2",
    "HX-4821",
    "ok",
    "আমি মালয়েশিয়া থাকি, বেতন পাই নাই",
    "amar beton 3 mash dei nai, ami bangla bolte pari",
    "म कतारमा काम गर्छु, मेरो पासपोर्ट कम्पनीले राख्यो",
    "sahu le passport diyena k garne",
    "အလုပ်ရှင်က လစာမပေးဘူး ထိုင်ဝမ်မှာ",
    "นายจ้างยึดพาสปอร์ตผม ทำงานที่ไต้หวัน",
    "tôi làm ở Đài Loan, công ty giữ hộ chiếu của tôi",
    "toi lam o dai loan",
    "saya kerja di hongkong, gaji sy blm dibayar 3 bulan",
    "majikan saya tak bayar gaji dah dua bulan di Singapura",
    "namaste",
    "123 !!! 😭",
]


@pytest.fixture(scope="module")
def training_data():
    from rasa.shared.nlu.training_data.loading import load_data
    from rasa.shared.nlu.training_data.training_data import TrainingData

    files = [str(f) for p in locale_packs.discover() for f in p.nlu_files]
    return TrainingData().merge(*[load_data(f) for f in files])


def context() -> ExecutionContext:
    return ExecutionContext(GraphSchema({}), "test")


def config(component) -> dict:
    return {**component.get_default_config(), "locales_dir": str(locale_packs.DEFAULT_LOCALES_DIR)}


@pytest.fixture(scope="module")
def stored(tmp_path_factory, training_data):
    """Each component trained (kept in memory) and stored in one Rasa model storage."""
    storage = LocalModelStorage(tmp_path_factory.mktemp("storage"))
    trained = {}
    for component in COMPONENTS:
        resource = Resource(component.__name__)
        instance = component.create(config(component), storage, resource, context())
        instance.train(training_data)
        trained[component] = (instance, resource)
    return storage, trained


def empty_storage(tmp_path: Path) -> LocalModelStorage:
    (tmp_path / "storage").mkdir()
    return LocalModelStorage(tmp_path / "storage")


def outputs(instance, texts) -> list[dict]:
    messages = [Message(data={"text": normalize(t)[0]}) for t in texts]
    return [m.data for m in instance.process(messages)]


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.__name__)
def test_a_stored_component_answers_as_the_one_in_memory(stored, component):
    storage, trained = stored
    in_memory, resource = trained[component]
    loaded = component.load(config(component), storage, resource, context())
    assert loaded.model is not in_memory.model
    expected = outputs(in_memory, MESSAGES)
    assert outputs(loaded, MESSAGES) == expected
    assert any(len(d) > 1 for d in expected)  # the component did set something


def test_the_stored_language_identifier_is_exact(stored):
    """Confidences unrounded, and the pack settings (priors, deferral, word rates) kept."""
    storage, trained = stored
    in_memory, resource = trained[LanguageIdentifierComponent]
    loaded = LanguageIdentifierComponent.load(
        config(LanguageIdentifierComponent), storage, resource, context()
    ).model
    model = in_memory.model
    assert loaded.defers_to == model.defers_to == {"ms": "id"}
    assert loaded.priors == model.priors and loaded.word_rates == model.word_rates
    for text in MESSAGES:
        assert loaded.identify(normalize(text)[0]) == model.identify(normalize(text)[0])


def _stored_bytes(folder: Path):
    """(name, first bytes) of every stored file, and of every member of a zip (skops) file."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        yield path.name, path.read_bytes()[:2]
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    yield f"{path.name}:{member}", archive.read(member)[:2]


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.__name__)
def test_nothing_stored_is_a_pickle(stored, component):
    storage, trained = stored
    with storage.read_from(trained[component][1]) as folder:
        files = list(_stored_bytes(Path(folder)))
    assert files
    for name, head in files:
        assert not name.endswith((".joblib", ".pkl", ".pickle")), name
        assert not head.startswith(b"\x80"), name  # every pickle protocol >= 2 starts so


class _CreatesMarker:
    """Unpickled or built, it creates a file: proof that loading ran the attacker's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))

    def __setstate__(self, state: dict) -> None:
        Path(state["marker"]).touch()


@pytest.mark.parametrize(
    "component", [*COMPONENTS, DangerDetectorComponent], ids=lambda c: c.__name__
)
def test_an_archive_with_a_pickle_is_refused_unopened(tmp_path, component):
    """As a model trained by the old code has it (model.joblib), or as an attacker would. (The
    danger detector, stored as JSON already, is tested in tests/test_danger.py: its training on
    the real packs takes over a minute.)"""
    marker = tmp_path / "ran"
    storage = empty_storage(tmp_path)
    resource = Resource(component.__name__)
    with storage.write_to(resource) as folder:
        (Path(folder) / "model.joblib").write_bytes(pickle.dumps(_CreatesMarker(marker)))
    with pytest.raises(OutdatedModelError, match="helpline train --force"):
        component.load(config(component), storage, resource, context())
    assert not marker.exists()


def test_a_classifier_file_with_an_untrusted_type_is_refused_unbuilt(stored, tmp_path):
    """skops builds only the types it is told to trust: a swapped classifier file holding any
    other object is refused before it is built."""
    import skops.io as sio

    storage, trained = stored
    resource = trained[LanguageIdentifierComponent][1]
    copy = empty_storage(tmp_path)
    with storage.read_from(resource) as folder, copy.write_to(resource) as target:
        shutil.copytree(folder, target, dirs_exist_ok=True)
        skops_files = list(Path(target).glob("*.skops"))
        assert skops_files
        marker = tmp_path / "ran"
        sio.dump(_CreatesMarker(marker), skops_files[0])
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        LanguageIdentifierComponent.load(
            config(LanguageIdentifierComponent), copy, resource, context()
        )
    assert not marker.exists()


def test_a_change_to_the_storage_code_makes_the_existing_model_stale(tmp_path, monkeypatch):
    """``helpline train`` names a model by a hash of its inputs and our NLU code: a model
    trained before a component's storage changed is not reused (nor loadable, above)."""
    from bot import cli

    root = tmp_path / "clone"
    shutil.copytree(cli.ROOT / "nlu", root / "nlu", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "bot").mkdir()
    shutil.copy(cli.ROOT / "bot" / "locale_packs.py", root / "bot")
    monkeypatch.setattr(cli, "ROOT", root)
    before = cli.fingerprint([], {})
    for name in ("pack_trained.py", "language.py"):
        path = root / "nlu" / "components" / name
        path.write_text(path.read_text() + "\n# stored differently\n")
        assert cli.fingerprint([], {}) != before
        before = cli.fingerprint([], {})
