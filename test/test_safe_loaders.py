"""No code runs from a data file (issue 13): the SMPL/GMM unpickler's allow-list, torch.load
with weights_only=True everywhere, and caches that are not pickles."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

from hmr_ros.adapt.prior import PriorFileError, load_prior
from hmr_ros.body.smpl_io import ALLOWED_GLOBALS, SMPLFileError, read_smpl_pkl


def _call(module: str, name: str, *args: str) -> bytes:
    """A protocol-0 pickle calling module.name(*args) (strings), as an attacker writes it."""
    body = "".join(f"V{a}\n" for a in args)
    return f"c{module}\n{name}\n({body}tR.".encode()


def _payloads(sentinel, tmp_path) -> dict[str, bytes]:
    touch = f"open({str(sentinel)!r}, 'w').close()"
    # Modules that create the sentinel when imported: `__import__` and a numpy-prefixed
    # module path must be refused before anything is imported.
    for mod in ("evil_import_mod", "numpyevil"):
        (tmp_path / f"{mod}.py").write_text(f"{touch}\nx = print\n")
    return {
        "exec": _call("builtins", "exec", touch),
        "eval": _call("builtins", "eval", touch),
        "getattr": (b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR"
                    + f"(Vtouch {sentinel}\ntR.".encode()),
        "__import__": _call("builtins", "__import__", "evil_import_mod"),
        "__builtin__.eval": _call("__builtin__", "eval", touch),
        "os.system": _call("os", "system", f"touch {sentinel}"),
        "posix.system": _call("posix", "system", f"touch {sentinel}"),
        "subprocess.Popen": (b"csubprocess\nPopen\n((Vtouch\nV" + str(sentinel).encode()
                             + b"\nltR."),
        # numpy's own test helpers exec a string: a numpy prefix is no proof of safety.
        "numpy.testing": (b"cnumpy.testing._private.utils\nrunstring\n(V" + touch.encode()
                          + b"\n(dtR."),  # runstring(code, {})
        "numpyevil": _call("numpyevil", "x", "hello"),
        "codecs": _call("_codecs", "encode", "abc", "rot13"),
    }


@pytest.mark.parametrize("name", ["exec", "eval", "getattr", "__import__", "__builtin__.eval",
                                  "os.system", "posix.system", "subprocess.Popen",
                                  "numpy.testing", "numpyevil", "codecs"])
def test_evil_pickles_are_refused_and_nothing_runs(tmp_path, monkeypatch, name):
    sentinel = tmp_path / "pwned"
    payload = _payloads(sentinel, tmp_path)[name]
    monkeypatch.syspath_prepend(str(tmp_path))
    # The payloads are real: the standard unpickler runs them (except the codec one, which
    # only looks a codec up); the sentinel is then removed.
    if name != "codecs":
        ran = pickle.loads(payload)
        if hasattr(ran, "wait"):  # Popen: let the child finish
            ran.wait()
        assert sentinel.exists(), "the payload should work against plain pickle"
        sentinel.unlink()
        for mod in ("evil_import_mod", "numpyevil"):
            sys.modules.pop(mod, None)
    for loader, error in ((read_smpl_pkl, SMPLFileError), (load_prior, PriorFileError)):
        path = tmp_path / ("SMPL_NEUTRAL.pkl" if loader is read_smpl_pkl else "gmm_08.pkl")
        path.write_bytes(payload)
        with pytest.raises(error, match="refused"):
            loader(path)
        assert not sentinel.exists()
        assert "evil_import_mod" not in sys.modules and "numpyevil" not in sys.modules


def test_allow_list_is_exact():
    """The names are listed, not prefixes: nothing from os, subprocess, numpy.testing or
    builtins' callables that run code."""
    mods = {m for m, _ in ALLOWED_GLOBALS}
    assert not {"os", "posix", "subprocess", "sys"} & mods
    names = {(m, n) for m, n in ALLOWED_GLOBALS if m in ("builtins", "__builtin__")}
    assert {n for _, n in names} == {"set", "frozenset", "object"}
    assert all(not m.startswith("numpy.testing") for m in mods)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_gmm_pickles_of_every_protocol_load(tmp_path, protocol):
    g = load_prior()
    path = tmp_path / "gmm_08.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"means": g.means, "covars": g.covars, "weights": g.weights,
                     "n": np.int64(3), "tags": {"a"}}, fh, protocol=protocol)
    loaded = load_prior(path)
    np.testing.assert_array_equal(loaded.means, g.means)
    np.testing.assert_array_equal(loaded.covars, g.covars)


def test_gmm_pickle_that_is_not_a_dict_is_refused(tmp_path):
    path = tmp_path / "gmm_08.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(PriorFileError, match="expected a dict"):
        load_prior(path)


# ------------------------------------------------------------------ bench stream cache


def _same_frames(a, b) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.image, y.image)
        assert (x.stamp_ns, x.index) == (y.stamp_ns, y.index)
        np.testing.assert_array_equal(x.camera.K, y.camera.K)
        assert (x.camera.width, x.camera.height) == (y.camera.width, y.camera.height)
        assert [d.id for d in x.detections] == [d.id for d in y.detections]
        for d, e in zip(x.detections, y.detections):
            assert d.keypoints.format == e.keypoints.format
            np.testing.assert_array_equal(d.keypoints.xy, e.keypoints.xy)
            np.testing.assert_array_equal(d.keypoints.confidence, e.keypoints.confidence)
            assert (d.box is None) == (e.box is None)
        assert set(x.ground_truth) == set(y.ground_truth)
        for pid, gt in x.ground_truth.items():
            np.testing.assert_array_equal(gt.full_pose(), y.ground_truth[pid].full_pose())
            np.testing.assert_array_equal(gt.betas, y.ground_truth[pid].betas)
            np.testing.assert_array_equal(gt.transl, y.ground_truth[pid].transl)


def test_stream_cache_is_npz_under_the_cache_folder(tmp_path, monkeypatch):
    """The cache was a pickle (code from any file at that path ran) and, for a domain given
    as a path, was written next to the YAML instead of under --cache."""
    from hmr_ros.bench import adapt
    from hmr_ros.data import frame_cache
    from hmr_ros.world.domain import domain_dir

    elsewhere = tmp_path / "some" / "dir"
    elsewhere.mkdir(parents=True)
    yaml_path = elsewhere / "x.yaml"
    yaml_path.write_text((domain_dir() / "robot_cam.yaml").read_text())
    cache = tmp_path / "cache"
    fresh = adapt.stream_frames(str(yaml_path.resolve()), 3, 0.2, cache)
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 1 and files[0].startswith("x-") and files[0].endswith("_s3_0.2s.npz")
    assert sorted(p.name for p in elsewhere.iterdir()) == ["x.yaml"]
    with np.load(cache / files[0], allow_pickle=False) as z:  # plain arrays only
        assert "meta" in z.files
    # A second call reads the cache (rendering is not called) and gets the same frames.
    monkeypatch.setattr("hmr_ros.world.scene.SyntheticSequence", None)
    _same_frames(fresh, adapt.stream_frames(str(yaml_path.resolve()), 3, 0.2, cache))
    # An edited YAML is another stream, not the old frames.
    yaml_path.write_text(yaml_path.read_text() + "\n# edited\n")
    assert adapt.cache_name(str(yaml_path), 3, 0.2) != files[0]
    # A file at the cache path that is not our npz (a pickle, say) is refused, never loaded.
    bogus = tmp_path / "bogus.npz"
    bogus.write_bytes(pickle.dumps(fresh[:1]))
    with pytest.raises(frame_cache.FrameCacheError, match="not a frame cache"):
        frame_cache.load_frames(bogus)
