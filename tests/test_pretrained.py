"""Weights: shipped files, manifest, safe loading."""

import pickle

import pytest
import torch

from deepinv_pnn.pretrained import (
    WEIGHTS_DIR,
    load_pretrained,
    read_manifest,
    read_metadata,
    save_weights,
)


def test_manifest_lists_exactly_the_shipped_files():
    entries = read_manifest()
    listed = {e["file"] for e in entries}
    shipped = {p.name for p in WEIGHTS_DIR.glob("*.safetensors")}
    assert listed == shipped
    for entry in entries:
        assert entry["command"].strip() and entry["metric"].strip(), entry
        assert (WEIGHTS_DIR / entry["file"]).stat().st_size < 5 * 1024 * 1024


def test_save_and_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    source, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    path = save_weights(source, tmp_path / "lin.safetensors", metadata={"seed": 0})
    load_pretrained(target, path)
    assert torch.equal(source.weight, target.weight)
    assert not (tmp_path / "lin.safetensors.tmp").exists()


def test_plain_state_dict_loads_with_weights_only(tmp_path):
    source, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    torch.save(source.state_dict(), tmp_path / "lin.pt")
    load_pretrained(target, tmp_path / "lin.pt")
    assert torch.equal(source.bias, target.bias)


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"model": torch.nn.Linear(3, 2)}, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_pretrained(torch.nn.Linear(3, 2), tmp_path / "evil.pt")


def test_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(torch.nn.Linear(3, 2), tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="no shipped weights"):
        load_pretrained(torch.nn.Linear(3, 2), True)
    save_weights(torch.nn.Linear(4, 2), tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="do not fit"):
        load_pretrained(torch.nn.Linear(3, 2), tmp_path / "other.safetensors")
    assert load_pretrained(torch.nn.Linear(3, 2), False) is not None


def test_metadata_and_storage_dtype(tmp_path):
    source = torch.nn.Embedding(3, 2)
    source.register_buffer("index", torch.arange(3))
    path = save_weights(source, tmp_path / "e.safetensors", metadata={"width": 2}, dtype=torch.float16)
    assert read_metadata(path) == {"width": "2"}
    from safetensors.torch import load_file

    stored = load_file(str(path))
    assert stored["weight"].dtype == torch.float16 and stored["index"].dtype == torch.int64
    target = torch.nn.Embedding(3, 2)
    target.register_buffer("index", torch.zeros(3, dtype=torch.int64))
    load_pretrained(target, path)
    assert target.weight.dtype == torch.float32
    assert torch.allclose(target.weight, source.weight, rtol=1e-3, atol=1e-4)
    assert torch.equal(target.index, torch.arange(3))
    torch.save(source.state_dict(), tmp_path / "e.pt")
    assert read_metadata(tmp_path / "e.pt") == {}
    with pytest.raises(TypeError, match="floating-point torch.dtype"):
        save_weights(source, tmp_path / "x.safetensors", dtype=torch.int32)
