"""The synthetic SMPL-format body model, the BodyModel wrapper and the SMPL file readers."""

from __future__ import annotations

import pickle
import sys
import types
from collections import Counter

import numpy as np
import pytest
import smplx
import torch
from smplx.utils import Struct

from hmr_ros.body import BodyModel, map_points
from hmr_ros.body.joints import (
    JOINT_SETS,
    LANDMARK_NAMES,
    NUM_SOURCE,
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    SMPLX_LANDMARK_KEYS,
    flip_permutation,
    get_joint_set,
)
from hmr_ros.body.smpl_io import SMPLFileError, read_smpl_pkl
from hmr_ros.body.synthetic import build_synthetic_smpl, rest_joints
from hmr_ros.geometry import axis_angle_to_matrix
from hmr_ros.npzio import write_npz
from hmr_ros.resources import resource_path

SHIPPED = resource_path("weights", "smpl_synthetic.npz")


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return build_synthetic_smpl()


@pytest.fixture(scope="module")
def body() -> BodyModel:
    return BodyModel()


def _bone_length_sum(joints: torch.Tensor) -> torch.Tensor:
    """joints (B, 24, 3) -> (B,) summed parent-child distances."""
    parents = torch.tensor(SMPL_PARENTS[1:])
    return (joints[:, 1:] - joints[:, parents]).norm(dim=-1).sum(-1)


def _random_pose(batch: int, scale: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return axis_angle_to_matrix(torch.randn(batch, 24, 3, generator=g) * scale)


# ---------------------------------------------------------------- generator and file


def test_shipped_file_is_a_bit_for_bit_rebuild(tmp_path, arrays):
    out = tmp_path / "rebuilt.npz"
    write_npz(out, arrays)
    assert out.read_bytes() == SHIPPED.read_bytes()
    # A second build in the same process gives the same bytes too.
    write_npz(tmp_path / "again.npz", build_synthetic_smpl())
    assert (tmp_path / "again.npz").read_bytes() == out.read_bytes()


def test_cli_check_reports_identical_and_different(tmp_path, capsys):
    from hmr_ros.cli import main

    assert main(["body-model", "--out", str(tmp_path / "m.npz")]) == 0
    assert main(["body-model", "--out", str(tmp_path / "m.npz"), "--check"]) == 0
    data = dict(np.load(tmp_path / "m.npz"))
    data["v_template"] = data["v_template"] + 1e-3
    write_npz(tmp_path / "m.npz", data)
    assert main(["body-model", "--out", str(tmp_path / "m.npz"), "--check"]) == 1
    assert "DIFFERS" in capsys.readouterr().out


def test_size_and_closed_consistently_oriented_surface(arrays):
    v, f = arrays["v_template"], arrays["f"]
    assert 1000 <= v.shape[0] <= 3000
    directed = Counter()
    for a, b, c in f:
        directed.update([(a, b), (b, c), (c, a)])
    # Closed and consistently oriented: every directed edge once, and its reverse once.
    assert max(directed.values()) == 1
    assert all((b, a) in directed for (a, b) in directed)
    assert len(np.unique(f)) == v.shape[0]  # no unused vertex


def test_every_part_is_outward_and_labelled(arrays):
    v, f, part = arrays["v_template"].astype(np.float64), arrays["f"], arrays["part_ids"]
    assert set(part.tolist()) == set(range(24))
    for p in range(24):
        faces = f[part[f[:, 0]] == p]
        assert np.all(part[faces] == p)  # parts are separate closed tubes
        a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
        volume = np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0
        assert volume > 0, SMPL_JOINT_NAMES[p]


def test_regressor_gives_the_rest_joints(arrays):
    reg = arrays["J_regressor"].astype(np.float64)
    np.testing.assert_allclose(reg.sum(1), 1.0, atol=1e-6)
    joints = reg @ arrays["v_template"].astype(np.float64)
    np.testing.assert_allclose(joints, rest_joints(), atol=1e-5)
    assert tuple(arrays["kintree_table"][0]) == SMPL_PARENTS


def test_skinning_weights_blend_near_every_joint(arrays):
    w = arrays["weights"].astype(np.float64)
    assert w.min() >= 0.0
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-5)
    verts, joints = arrays["v_template"], rest_joints()
    for c in range(1, 24):
        p = SMPL_PARENTS[c]
        both = (w[:, c] > 0.2) & (w[:, p] > 0.2)
        assert both.any(), f"no blending across {SMPL_JOINT_NAMES[c]}"
        # Blended vertices sit near the joint they blend across.
        dist = np.linalg.norm(verts[both] - joints[c], axis=1)
        assert dist.max() < 0.2, SMPL_JOINT_NAMES[c]


def test_shape_directions_are_distinct_and_move_joints(arrays):
    sd = arrays["shapedirs"].reshape(-1, 10).astype(np.float64)
    assert np.all(np.linalg.norm(sd, axis=0) > 0.05)
    assert np.linalg.matrix_rank(sd, tol=1e-6) == 10
    # Joints move under shape through the regressor; girth, belly and head size do not.
    moved = np.abs(arrays["J_regressor"] @ arrays["shapedirs"].reshape(-1, 3, 10)
                   .transpose(2, 0, 1)).max(axis=(1, 2))
    assert (moved > 1e-3).sum() == 6  # stature, legs, arms, shoulders, hips, torso


def test_landmarks_are_where_their_names_say(arrays):
    v = arrays["v_template"]
    lm = dict(zip(LANDMARK_NAMES, v[arrays["landmark_ids"]]))
    j = dict(zip(SMPL_JOINT_NAMES, rest_joints()))
    assert lm["nose"][2] > j["head"][2] + 0.05  # in front of the face
    assert lm["left_eye"][0] > 0 > lm["right_eye"][0]
    assert lm["left_ear"][0] > lm["left_eye"][0]
    assert lm["head_top"][1] > lm["nose"][1] > j["neck"][1]
    for side, s in (("left", 1), ("right", -1)):
        assert lm[f"{side}_heel"][2] < j[f"{side}_ankle"][2]
        assert lm[f"{side}_big_toe"][2] > j[f"{side}_foot"][2]
        assert s * lm[f"{side}_middle"][0] > s * j[f"{side}_hand"][0]
    assert len(set(arrays["landmark_ids"].tolist())) == len(LANDMARK_NAMES)


# ---------------------------------------------------------------- plain smplx


def test_loads_with_plain_smplx_and_forward_is_finite():
    data = Struct(**dict(np.load(SHIPPED)))
    ids = dict(zip(SMPLX_LANDMARK_KEYS, (int(i) for i in data.landmark_ids[:21])))
    model = smplx.SMPL(model_path=str(SHIPPED), data_struct=data, vertex_ids=ids)
    g = torch.Generator().manual_seed(0)
    out = model(betas=torch.randn(4, 10, generator=g),
                body_pose=torch.randn(4, 69, generator=g) * 0.4,
                global_orient=torch.randn(4, 3, generator=g))
    assert out.vertices.shape == (4, data.v_template.shape[0], 3)
    assert out.joints.shape == (4, 45, 3)
    assert torch.isfinite(out.vertices).all()


def test_first_shape_coefficient_lengthens_bones(body):
    betas = torch.zeros(5, 10)
    betas[:, 0] = torch.linspace(-2, 2, 5)
    rot = _random_pose(1, 0.3, seed=1).expand(5, -1, -1, -1)
    out = body.forward_rotmat(rot, betas)
    lengths = _bone_length_sum(out.joints)
    assert torch.all(lengths[1:] > lengths[:-1] + 0.02)
    height = out.vertices[..., 1].amax(1) - out.vertices[..., 1].amin(1)
    assert height[-1] > height[0]


# ---------------------------------------------------------------- BodyModel


def test_body_output_shapes_and_consistency(body):
    rot = _random_pose(3, 0.5, seed=2)
    betas = torch.randn(3, 10, generator=torch.Generator().manual_seed(3))
    transl = torch.tensor([[0.1, -0.2, 3.0]]).expand(3, 3)
    out = body.forward_rotmat(rot, betas, transl)
    assert out.vertices.shape == (3, body.num_vertices, 3)
    assert out.joints.shape == (3, 24, 3)
    assert out.landmarks.shape == (3, len(LANDMARK_NAMES), 3)
    assert out.points.shape == (3, NUM_SOURCE, 3)
    # Translation adds to everything.
    plain = body.forward_rotmat(rot, betas)
    torch.testing.assert_close(out.vertices, plain.vertices + transl[:, None])
    # Landmarks are the vertices they name.
    torch.testing.assert_close(out.landmarks, out.vertices[:, body.landmark_ids])
    # Axis-angle entry point agrees with the matrix one.
    aa = torch.randn(3, 72, generator=torch.Generator().manual_seed(4)) * 0.3
    torch.testing.assert_close(
        body.forward_axis_angle(aa, betas).joints,
        body.forward_rotmat(axis_angle_to_matrix(aa.view(3, 24, 3)), betas).joints)


def test_global_orientation_rotates_about_the_pelvis(body):
    betas = torch.zeros(1, 10)
    rest = body.forward_rotmat(torch.eye(3).expand(1, 24, 3, 3), betas)
    flip = torch.eye(3).expand(1, 24, 3, 3).clone()
    flip[0, 0] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))  # pi about x: upright in camera
    turned = body.forward_rotmat(flip, betas)
    torch.testing.assert_close(turned.joints[0, 0], rest.joints[0, 0])
    expected = (rest.vertices[0] - rest.joints[0, 0]) * torch.tensor([1.0, -1.0, -1.0])
    torch.testing.assert_close(turned.vertices[0] - turned.joints[0, 0], expected)
    # Head above the pelvis in SMPL coordinates, below it (smaller y) once flipped.
    assert rest.joints[0, 15, 1] > rest.joints[0, 0, 1] > turned.joints[0, 15, 1]


def test_pose_is_differentiable(body):
    pose = (torch.randn(2, 24, 3) * 0.2).requires_grad_()
    betas = torch.zeros(2, 10, requires_grad=True)
    out = body.forward_axis_angle(pose, betas)
    (out.joints.square().sum() + out.vertices.sum()).backward()
    assert torch.isfinite(pose.grad).all() and pose.grad.abs().sum() > 0
    assert betas.grad.abs().sum() > 0


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(SMPLFileError, match="does not exist"):
        BodyModel(tmp_path / "nope.pkl")
    with pytest.raises(ValueError, match="gender"):
        BodyModel(gender="robot")
    with pytest.raises(SMPLFileError, match="no female SMPL model"):
        BodyModel(tmp_path, gender="female")
    data = dict(np.load(SHIPPED))
    del data["weights"]
    write_npz(tmp_path / "broken.npz", data)
    with pytest.raises(SMPLFileError, match="weights"):
        BodyModel(tmp_path / "broken.npz")
    data = dict(np.load(SHIPPED))
    data["J_regressor"] = data["J_regressor"][:, :-1]
    write_npz(tmp_path / "shape.npz", data)
    with pytest.raises(SMPLFileError, match="J_regressor has shape"):
        BodyModel(tmp_path / "shape.npz")
    data = dict(np.load(SHIPPED))
    del data["landmark_ids"]
    write_npz(tmp_path / "nolm.npz", data)
    with pytest.raises(SMPLFileError, match="landmark_ids"):
        BodyModel(tmp_path / "nolm.npz")


# ---------------------------------------------------------------- official .pkl layout


def _fake_modules() -> dict[str, types.ModuleType]:
    """Stand-ins named like chumpy's and scipy's classes, only to WRITE a pickle that refers
    to them the way an official SMPL file does; the reader under test never imports them."""

    class Ch:
        def __init__(self, x):
            self.x = x

        def __getstate__(self):
            return {"x": self.x, "_dirty_vars": set()}

    class csc_matrix:  # noqa: N801 - the pickled class name must match scipy's
        def __init__(self, dense):
            rows, cols = np.nonzero(dense.T)  # column-major walk
            self.data = dense.T[rows, cols]
            self.indices = cols
            self.indptr = np.searchsorted(rows, np.arange(dense.shape[1] + 1))
            self._shape = dense.shape

        def __getstate__(self):
            return {"data": self.data, "indices": self.indices, "indptr": self.indptr,
                    "_shape": self._shape, "maxprint": 50}

    mods = {name: types.ModuleType(name) for name in
            ("chumpy", "chumpy.ch", "scipy", "scipy.sparse", "scipy.sparse._csc")}
    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    csc_matrix.__module__, csc_matrix.__qualname__ = "scipy.sparse._csc", "csc_matrix"
    mods["chumpy.ch"].Ch = Ch
    mods["scipy.sparse._csc"].csc_matrix = csc_matrix
    return mods


def _write_official_style_pkl(path, arrays) -> None:
    mods = _fake_modules()
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        Ch, csc = mods["chumpy.ch"].Ch, mods["scipy.sparse._csc"].csc_matrix
        obj = {
            "f": arrays["f"].astype(np.uint32),
            "v_template": Ch(arrays["v_template"].astype(np.float64)),
            "shapedirs": Ch(arrays["shapedirs"].astype(np.float64)),
            "posedirs": arrays["posedirs"].astype(np.float64),
            "J_regressor": csc(arrays["J_regressor"].astype(np.float64)),
            "kintree_table": np.where(arrays["kintree_table"] < 0, 4294967295,
                                      arrays["kintree_table"]).astype(np.int64),
            "weights": Ch(arrays["weights"].astype(np.float64)),
            "landmark_ids": arrays["landmark_ids"],
            "bs_style": "lbs",
        }
        with open(path, "wb") as fh:
            pickle.dump(obj, fh, protocol=2)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_official_style_pkl_reads_without_chumpy(tmp_path, arrays, body):
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    _write_official_style_pkl(path, arrays)
    assert "chumpy" not in sys.modules
    raw = read_smpl_pkl(path)
    np.testing.assert_allclose(raw["J_regressor"], arrays["J_regressor"], atol=1e-7)
    np.testing.assert_allclose(raw["shapedirs"], arrays["shapedirs"], atol=1e-7)
    # A folder with SMPL_{GENDER}.pkl loads like the file; outputs match the npz model.
    from_pkl = BodyModel(tmp_path, gender="neutral")
    rot = _random_pose(2, 0.4, seed=5)
    betas = torch.randn(2, 10, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(from_pkl.forward_rotmat(rot, betas).vertices,
                               body.forward_rotmat(rot, betas).vertices)
    assert "chumpy" not in sys.modules


def test_pickle_with_foreign_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"f": types.SimpleNamespace(a=1)}))
    with pytest.raises(SMPLFileError, match="refused to load types.SimpleNamespace"):
        read_smpl_pkl(path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(SMPLFileError, match="not a readable SMPL pickle"):
        read_smpl_pkl(path)


# ---------------------------------------------------------------- joint sets


@pytest.mark.parametrize("name,size", [("smpl24", 24), ("coco17", 17), ("body25", 25),
                                       ("rep155_18", 18), ("h36m17", 17), ("lsp14", 14)])
def test_joint_set_sizes_and_rows(name, size):
    js = get_joint_set(name)
    m = js.matrix()
    assert len(js) == size and m.shape == (size, NUM_SOURCE)
    np.testing.assert_allclose(m.sum(1), 1.0)
    assert len(set(js.joint_names)) == size
    assert set(js.approximate) <= set(js.joint_names)


def test_mappings_pick_the_right_points(body):
    out = body.forward_rotmat(_random_pose(2, 0.3, seed=7), torch.zeros(2, 10))
    pts = out.points
    coco = map_points(pts, "coco17")
    torch.testing.assert_close(coco[:, 5], out.joints[:, 16])  # left shoulder
    torch.testing.assert_close(coco[:, 0], out.landmarks[:, 0])  # nose
    body25 = map_points(pts, "body25")
    torch.testing.assert_close(body25[:, 1], out.joints[:, [16, 17]].mean(1))  # neck
    torch.testing.assert_close(body25[:, 8], out.joints[:, [1, 2]].mean(1))  # mid hip
    rep = map_points(pts, "rep155_18")
    assert get_joint_set("rep155_18").joint_names[14] == "left_eye"
    torch.testing.assert_close(rep[:, 14], out.landmarks[:, LANDMARK_NAMES.index("left_eye")])
    lsp = map_points(pts, "lsp14")
    torch.testing.assert_close(lsp[:, 13], out.landmarks[:, -1])  # head top
    with pytest.raises(KeyError, match="known"):
        get_joint_set("mpii")
    with pytest.raises(ValueError, match="source points"):
        map_points(out.joints, "coco17")


def test_flip_permutation_is_an_involution():
    for js in JOINT_SETS.values():
        perm = flip_permutation(js.joint_names)
        assert [perm[p] for p in perm] == list(range(len(js)))
        for i, n in enumerate(js.joint_names):
            if n.startswith("left_"):
                assert js.joint_names[perm[i]] == "right_" + n[5:]


def test_points_rotmat_equals_the_full_mesh_points_and_their_gradients():
    """The adaptation losses' points-only path poses 22 landmark vertices, not the mesh: same
    points, same first and second derivatives as the full smplx forward."""
    from hmr_ros.geometry import axis_angle_to_matrix

    body = BodyModel().double()
    g = torch.Generator().manual_seed(5)
    rot = axis_angle_to_matrix(0.6 * torch.randn(3, 24, 3, generator=g, dtype=torch.float64))
    betas = torch.randn(3, 10, generator=g, dtype=torch.float64)
    full = body.forward_rotmat(rot, betas).points
    fast = body.points_rotmat(rot, betas)
    assert fast.shape == (3, 46, 3)
    # The folded maps are stored in the model's float32, hence a micrometre, not 1e-10.
    torch.testing.assert_close(fast, full, atol=1e-6, rtol=0)
    w = torch.randn(3, 46, 3, generator=g, dtype=torch.float64)

    def grads(fn):
        r, b = rot.clone().requires_grad_(True), betas.clone().requires_grad_(True)
        gr, gb = torch.autograd.grad((fn(r, b) * w).sum(), [r, b], create_graph=True)
        hvp = torch.autograd.grad(gr.square().sum() + gb.square().sum(), [r, b])
        return gr, gb, *hvp

    for a, b in zip(grads(lambda r, b: body.forward_rotmat(r, b).points),
                    grads(body.points_rotmat)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # A body that moved: the points follow it (not a cached rest pose).
    bent = rot.clone()
    bent[:, 18] = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, 1.2]], dtype=torch.float64))
    assert (body.points_rotmat(bent, betas) - fast).abs().max() > 1e-2
