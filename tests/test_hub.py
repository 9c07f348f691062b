"""Presets and the Hub: save_to_preset / load_preset round trips, upload and download through a loopback Hub
(tests/hub_server.py), and hostile presets and URIs refused in one line with nothing cached."""

import json
import os

import numpy as np
import pytest

from conftest import TINY
from hub_server import HubServer, hub  # noqa: F401  (hub: the loopback Hub fixture)

keras = pytest.importorskip("keras")

import keras_regnet  # noqa: E402
from keras_regnet.hub import (  # noqa: E402
    PresetDownloadError,
    PresetError,
    load_preset,
    parse_hub_uri,
    save_to_preset,
    upload_preset,
)

NAMES = ["cat", "dog", "emu"]


def _classifier(classes=3, **kwargs):
    model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=classes, **kwargs)
    model.set_pretrained_cfg(class_names=NAMES[:classes], crop_pct=0.9, interpolation="bilinear")
    # not the initial state: a trained head and a frozen stem, as after fine-tuning
    fc = model.get_layer("head_fc")
    fc.set_weights([w + np.random.normal(0, 0.1, w.shape).astype("float32") for w in fc.get_weights()])
    model.get_layer("stem_conv").trainable = False
    return model


def _images(n=2, size=32):
    return np.random.RandomState(1).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _same_model(a, b):
    x = _images()
    np.testing.assert_allclose(b.predict(x, verbose=0), a.predict(x, verbose=0), rtol=0, atol=1e-6)
    assert b.pretrained_cfg == a.pretrained_cfg or {k: v for k, v in b.pretrained_cfg.items() if k in a.pretrained_cfg} \
        == a.pretrained_cfg
    try:
        from keras_regnet.pretrained import class_names, eval_config
    except ImportError:  # before the pretrained-config module split
        from keras_regnet.models import class_names, eval_config
    assert class_names(b) == class_names(a)
    assert eval_config(b) == eval_config(a)
    assert b.get_config()["frozen_layers"] == a.get_config()["frozen_layers"]
    assert b.spec == a.spec and b.name == a.name


# ------------------------------------------------------------------------------------------------ folders

def test_preset_folder_has_keras_hub_layout_and_round_trips(tmp_path):
    model = _classifier()
    folder = save_to_preset(model, tmp_path / "preset")
    assert sorted(os.listdir(folder)) == sorted([
        "config.json", "model.weights.h5", "metadata.json", "task.json", "task.weights.h5", "preprocessor.json",
        "image_converter.json", "README.md"])
    config = json.load(open(os.path.join(folder, "config.json")))
    assert config["registered_name"] == "keras_regnet>RegNetBackbone"
    assert config["config"]["pretrained_cfg"]["class_names"] == NAMES
    task = json.load(open(os.path.join(folder, "task.json")))
    assert task["registered_name"] == "keras_regnet>RegNetImageClassifier" and task["config"]["num_classes"] == 3
    converter = json.load(open(os.path.join(folder, "image_converter.json")))["config"]
    assert converter["image_size"] == [32, 32] and converter["interpolation"] == "bilinear"
    assert converter["scale"] is None  # the model normalises inside: no second normalisation
    assert json.load(open(os.path.join(folder, "metadata.json")))["tasks"] == ["ImageClassifier"]
    card = open(os.path.join(folder, "README.md")).read()
    assert "pipeline_tag: image-classification" in card and "library_name: keras-hub" in card
    assert "`cat`, `dog`, `emu`" in card and "AnyNet(depths=[1, 1, 1, 1]" in card
    _same_model(model, load_preset(folder))


@pytest.mark.parametrize("kwargs", [dict(pooling="avg"), dict(pooling=None), dict(features=["s2", "s4"])])
@pytest.mark.slow  # keras-hub round trips, three variants
def test_backbone_presets_round_trip(tmp_path, kwargs):
    model = keras_regnet.build_model(keras_regnet.AnyNetParams(**TINY), include_top=False, input_shape=(32, 32, 3),
                                     **kwargs)
    folder = save_to_preset(model, tmp_path / "p")
    assert not os.path.exists(os.path.join(folder, "task.json"))
    again = load_preset(folder)
    x = _images()
    a, b = model.predict(x, verbose=0), again.predict(x, verbose=0)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    else:
        np.testing.assert_array_equal(a, b)
    assert again.build_options == model.build_options


def test_pretrained_cfg_of_registry_weights_names_source_license_and_top1(tmp_path):
    from keras_regnet.hub.preset import preset_files

    model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=3)
    model.set_pretrained_cfg(weights="imagenet", arch="RegNetY-600MF")
    cfg = preset_files(model)["config.json"]["config"]["pretrained_cfg"]
    assert cfg["license"] == "mit" and cfg["top1"] == 75.46
    assert "timm/regnety_006.pycls_in1k" in cfg["source"]


def test_saving_replaces_a_preset_but_refuses_other_folders_and_leaves_nothing_on_failure(tmp_path):
    model = _classifier()
    folder = tmp_path / "p"
    save_to_preset(model, folder)
    save_to_preset(model, folder)  # a preset is replaced
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    with pytest.raises(PresetError, match="non-empty folder that is not a preset"):
        save_to_preset(model, other)
    assert os.listdir(other) == ["todo.txt"]
    with pytest.raises(PresetError, match="takes a keras_regnet.RegNetModel"):
        save_to_preset(keras.Sequential([keras.layers.Dense(1)]), tmp_path / "q")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "p"]  # no temporary folder left behind


def test_model_method_and_get_model_accept_presets(tmp_path):
    model = _classifier()
    if not hasattr(model, "save_to_preset"):
        pytest.skip("RegNetModel.save_to_preset is not wired in this tree yet")
    folder = model.save_to_preset(tmp_path / "p")
    _same_model(model, keras_regnet.RegNetModel.from_preset(folder))
    _same_model(model, keras_regnet.get_model(str(folder)))


def test_model_exposes_keras_hub_attributes():
    model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), include_top=False)
    if not hasattr(model, "image_shape"):
        pytest.skip("RegNetModel.image_shape is not wired in this tree yet")
    assert tuple(model.image_shape) == (32, 32, 3) and model.data_format == "channels_last"


# ------------------------------------------------------------------------------------------------ hostile folders

def _damage(folder, name, how):
    path = os.path.join(folder, name)
    if how == "truncate":
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
    elif how == "remove":
        os.remove(path)
    else:
        config = json.load(open(path))
        how(config)
        json.dump(config, open(path, "w"))


def _other_class(config):
    config.update(registered_name="keras_hub>ResNetBackbone", class_name="ResNetBackbone", module="keras_hub")


@pytest.mark.parametrize("name, how, message", [
    ("config.json", _other_class, r"holds a 'keras_hub>ResNetBackbone', not a RegNet .*Backbone.from_preset"),
    ("model.weights.h5", "truncate", r"model.weights.h5 of .* not a complete HDF5 weights file"),
    ("task.weights.h5", "truncate", r"task.weights.h5 of .* not a complete HDF5 weights file"),
    ("model.weights.h5", "remove", r"has no model.weights.h5"),
    ("config.json", "remove", r"has no config.json: it is not a keras-hub preset"),
    ("config.json", lambda c: c["config"]["spec"].update(widths=[8, 16, 24, 40]), r"does not fit its config"),
])
def test_damaged_preset_folders_are_refused_in_one_line(tmp_path, name, how, message):
    folder = save_to_preset(_classifier(), tmp_path / "p")
    _damage(folder, name, how)
    with pytest.raises(PresetError, match=message) as info:
        load_preset(folder)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("uri", [
    "hf://owner/../etc", "hf://owner/name/..", "hf://../name", "hf://owner/na..me", "hf://owner/name@../main",
    "hf://owner", "hf://owner/name/extra", "hf://owner/name@", "hf:///name", "hf://ow ner/name",
])
def test_bad_uris_are_refused_before_any_request(hub, uri):
    with pytest.raises(PresetError, match="bad Hub URI") as info:
        load_preset(uri)
    assert "\n" not in str(info.value)
    assert hub.requests == []


def test_uri_parsing():
    assert parse_hub_uri("hf://me/tiny") == ("me/tiny", None)
    assert parse_hub_uri("hf://me/tiny.v2@a1b2c3") == ("me/tiny.v2", "a1b2c3")
    assert str(parse_hub_uri("hf://me/tiny@refs/pr/1")) == "hf://me/tiny@refs/pr/1"
    with pytest.raises(PresetError, match="uploads go to the main branch"):
        parse_hub_uri("hf://me/tiny@dev", allow_revision=False)


# ------------------------------------------------------------------------------------------------ the Hub

def test_upload_then_download_round_trip_in_one_commit_over_plain_lfs(hub, tmp_path, monkeypatch):
    model = _classifier()
    folder = save_to_preset(model, tmp_path / "p")
    url = upload_preset("hf://user/tiny", folder, private=True, commit_message="first RegNet")
    assert "/user/tiny/commit/" in url
    assert hub.count("POST", r"/commit/main$") == 1 and hub.count("POST", r"objects/batch$") == 1
    assert hub.count("PUT", r"^/lfs-upload/") == 2  # model.weights.h5 and task.weights.h5 as LFS objects
    assert hub.repos["user/tiny"].private
    assert hub.file("user/tiny", "model.weights.h5") == open(os.path.join(folder, "model.weights.h5"), "rb").read()

    hub.requests.clear()
    _same_model(model, load_preset("hf://user/tiny"))
    assert hub.count("GET", r"/resolve/") >= 2
    # cached: offline, without a single request
    hub.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _same_model(model, load_preset("hf://user/tiny"))
    assert hub.requests == []


@pytest.mark.slow  # several pushes to the loopback Hub
def test_revisions_are_pinned_and_new_pushes_replace_stale_files(hub, tmp_path):
    first = _classifier()
    upload_preset("hf://user/tiny", save_to_preset(first, tmp_path / "a"))
    commit = hub.repos["user/tiny"].refs["main"]
    backbone = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), include_top=False)
    upload_preset("hf://user/tiny", save_to_preset(backbone, tmp_path / "b"))
    files = hub.repos["user/tiny"].files("main")[1]
    assert "task.json" not in files and "task.weights.h5" not in files  # a backbone preset now: no stale head
    assert load_preset("hf://user/tiny").build_options["include_top"] is False
    _same_model(first, load_preset(f"hf://user/tiny@{commit}"))


def _hf_folder(tmp_path, repo):
    return tmp_path / "hf-cache" / ("models--" + repo.replace("/", "--"))


@pytest.mark.parametrize("name, how, message", [
    ("config.json", _other_class, r"holds a 'keras_hub>ResNetBackbone', not a RegNet"),
    ("model.weights.h5", "truncate", r"not a complete HDF5 weights file"),
    ("model.weights.h5", "remove", r"has no model.weights.h5"),
])
def test_hostile_hub_presets_are_refused_and_nothing_is_cached(hub, tmp_path, name, how, message):
    folder = save_to_preset(_classifier(), tmp_path / "p")
    _damage(folder, name, how)
    hub.commit("evil/model", {n: open(os.path.join(folder, n), "rb").read() for n in os.listdir(folder)})
    with pytest.raises(PresetError, match=message) as info:
        load_preset("hf://evil/model")
    assert "\n" not in str(info.value)
    assert not _hf_folder(tmp_path, "evil/model").exists()
    if name == "config.json":  # refused from config.json alone: the weights were never downloaded
        assert hub.count("GET", r"model\.weights\.h5$") == 0


def test_repos_that_are_not_presets_or_do_not_exist(hub, tmp_path, monkeypatch):
    hub.commit("user/notes", {"README.md": b"# just notes\n"})
    with pytest.raises(PresetError, match=r"hf://user/notes is not a preset \(no config.json") as info:
        load_preset("hf://user/notes")
    assert "\n" not in str(info.value)
    assert not _hf_folder(tmp_path, "user/notes").exists()
    hub.commit("user/timm", {"config.json": json.dumps({"architecture": "resnet50"}).encode(),
                             "model.safetensors": b"\0" * 64})
    with pytest.raises(PresetError, match="timm or transformers checkpoint"):
        load_preset("hf://user/timm")
    with pytest.raises(PresetDownloadError, match="no such repository"):
        load_preset("hf://user/missing")
    hub.commit("user/tiny", {"README.md": b"x"})
    with pytest.raises(PresetDownloadError, match="no revision 'v9'"):
        load_preset("hf://user/tiny@v9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PresetDownloadError, match="not in the cache and HF_HUB_OFFLINE is set"):
        load_preset("hf://user/other")


def test_upload_never_sends_a_partial_preset_and_needs_a_token(hub, tmp_path, monkeypatch):
    from keras_regnet.hub import PresetUploadError

    folder = save_to_preset(_classifier(), tmp_path / "p")
    os.remove(os.path.join(folder, "task.weights.h5"))
    with pytest.raises(PresetError, match="has no task.weights.h5"):
        upload_preset("hf://user/tiny", folder)
    assert hub.requests == []
    with pytest.raises(PresetError, match="not exist"):
        upload_preset("hf://user/tiny", tmp_path / "nowhere")
    folder = save_to_preset(_classifier(), tmp_path / "q")
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(PresetUploadError, match=r"refused the upload .*HTTP 401.*HF_TOKEN") as info:
        upload_preset("hf://user/tiny", folder)
    assert "\n" not in str(info.value)
    assert "user/tiny" not in hub.repos


@pytest.mark.slow  # a second Hub round trip; the fast tier keeps upload/download
def test_keras_model_save_to_hub_loads_after_import_keras_regnet(hub, tmp_path):
    """Keras's own Hub support: model.save('hf://...') then keras.saving.load_model('hf://...')."""
    model = _classifier()
    model.save("hf://user/saved")
    assert "config.json" in hub.repos["user/saved"].files("main")[1]
    again = keras.saving.load_model("hf://user/saved")
    assert isinstance(again, keras_regnet.RegNetModel)
    _same_model(model, again)
    # the package's loader takes the same repository
    _same_model(model, load_preset("hf://user/saved"))


def test_hub_server_is_loopback_only():
    with HubServer() as server:
        assert server.url.startswith("http://127.0.0.1:")


# ------------------------------------------------------------------------------------------------ commands

def _run_cli(*argv):
    from keras_regnet import cli

    return cli.main([str(a) for a in argv])


def _png(path, size=32):
    import tensorflow as tf

    pixels = np.random.RandomState(2).randint(0, 255, (size, size, 3), dtype=np.uint8)
    path.write_bytes(tf.io.encode_png(pixels).numpy())
    return path


def test_push_a_trained_keras_file_then_predict_from_the_hub(hub, tmp_path, capsys):
    run = tmp_path / "runs" / "pets"
    run.mkdir(parents=True)
    model = _classifier()
    model.save(run / "best.keras")
    (run / "config.json").write_text(json.dumps({"dataset": "photos/", "epochs": 3, "preset": "finetune",
                                                 "model": "RegNetY600MF", "data_dir": None}))
    assert _run_cli("push", run / "best.keras", "hf://user/pets", "--private", "--message", "pets v1") == 0
    out = capsys.readouterr().out
    assert "pushed hf://user/pets" in out and "keras_regnet.get_model('hf://user/pets')" in out
    assert hub.messages[-1] == "pets v1" and hub.repos["user/pets"].private
    card = hub.file("user/pets", "README.md").decode()
    assert "**Training:** model=RegNetY600MF, preset=finetune, dataset=photos/, epochs=3." in card
    assert _run_cli("predict", "--model", "hf://user/pets", "--top", "3", _png(tmp_path / "img.png")) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in NAMES)


def test_push_refuses_bad_input_in_one_line(hub, tmp_path, capsys):
    assert _run_cli("push", tmp_path / "missing.keras", "hf://user/x") == 2
    assert "does not exist" in capsys.readouterr().err
    folder = save_to_preset(_classifier(), tmp_path / "p")
    assert _run_cli("push", folder, "hf://user/../x") == 2
    assert "bad Hub URI" in capsys.readouterr().err
    assert _run_cli("push", folder, "hf://user/x@dev") == 2
    assert "uploads go to the main branch" in capsys.readouterr().err
    os.remove(os.path.join(folder, "model.weights.h5"))
    assert _run_cli("push", folder, "hf://user/x") == 2
    err = capsys.readouterr().err
    assert "has no model.weights.h5" in err and len(err.strip().splitlines()) == 1
    assert hub.requests == []


def test_preset_command_mirrors_registry_weights_with_source_license_and_accuracy(hub, tmp_path, monkeypatch, capsys):
    """``keras-regnet preset`` on a registry entry served by the loopback Hub (the tiny fixture's weights)."""
    from test_weights import fixture

    from keras_regnet import specs
    from keras_regnet.weights import registry

    _, spec, path = fixture("x")
    entry = registry.REGISTRY["RegNetX-200MF"][0]
    monkeypatch.setitem(entry, "classes", spec["classes"])
    monkeypatch.setitem(specs.MODEL_PARAMS, "RegNetX-200MF",
                        specs.RegNetParams(**{k: v for k, v in spec.items() if k != "classes"}))
    hub.commit(entry["repo"], {"model.safetensors": open(path, "rb").read()})
    out_dir = tmp_path / "mirror"
    assert _run_cli("preset", "RegNetX200MF", "--weights", "imagenet", "--output", out_dir) == 0
    out = capsys.readouterr().out
    assert f"license {entry['license']}" in out and f"top-1 {entry['top1']}%" in out
    card = (out_dir / "README.md").read_text()
    assert f"license: {entry['license']}" in card and f"published ImageNet-1k top-1: {entry['top1']}%" in card
    assert entry["repo"] in card
    model = load_preset(out_dir)
    assert model.pretrained_cfg["weights"] == "imagenet" and model.build_options["arch"] == "RegNetX-200MF"
    assert _run_cli("push", out_dir, "hf://me/regnetx200") == 0
    assert load_preset("hf://me/regnetx200").pretrained_cfg["license"] == entry["license"]
