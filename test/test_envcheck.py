"""One distribution per top-level module: the check CI runs after installing, on fake and on
the real installed distributions; the provenance block that results carry."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from hmr_ros.envcheck import (
    DuplicateModuleError,
    ModuleOwner,
    main,
    owners,
    single_owner,
    top_level_names,
)


@dataclass
class FakeDist:
    name: str
    version: str = "1.0"
    top_level: str | None = None
    record: list[str] = field(default_factory=list)

    @property
    def metadata(self) -> dict:
        return {"Name": self.name}

    @property
    def files(self) -> list[str]:
        return self.record

    def read_text(self, filename: str) -> str | None:
        return self.top_level if filename == "top_level.txt" else None


HEADLESS = FakeDist("opencv-python-headless", "5.0.0.93", top_level="cv2\n")
CONTRIB = FakeDist("opencv-contrib-python", "5.1.0.95",
                   record=["cv2/__init__.py", "cv2/cv2.abi3.so",
                           "opencv_contrib_python-5.1.0.95.dist-info/RECORD",
                           "opencv_contrib_python.libs/libavcodec.so"])
NUMPY = FakeDist("numpy", "2.4.6", top_level="numpy\n")


def test_top_level_names_from_top_level_txt_or_record():
    assert top_level_names(HEADLESS) == {"cv2"}
    assert top_level_names(CONTRIB) == {"cv2"}
    single = FakeDist("six", record=["six.py", "six-1.16.dist-info/RECORD",
                                     "_cffi_backend.cpython-311-x86_64-linux-gnu.so"])
    assert top_level_names(single) == {"six", "_cffi_backend"}
    assert top_level_names(FakeDist("empty")) == set()


def test_two_distributions_of_cv2_fail_the_check():
    assert owners("cv2", [NUMPY, HEADLESS, CONTRIB]) == [
        ModuleOwner("opencv-contrib-python", "5.1.0.95"),
        ModuleOwner("opencv-python-headless", "5.0.0.93")]
    with pytest.raises(DuplicateModuleError, match=r"2 installed distributions provide 'cv2' "
                       r"\(opencv-contrib-python 5.1.0.95, opencv-python-headless 5.0.0.93\)"):
        single_owner("cv2", [HEADLESS, NUMPY, CONTRIB])


def test_one_distribution_passes_and_none_is_an_error():
    assert single_owner("cv2", [NUMPY, CONTRIB]) == ModuleOwner("opencv-contrib-python",
                                                                "5.1.0.95")
    with pytest.raises(ModuleNotFoundError, match="no installed distribution provides 'cv2'"):
        single_owner("cv2", [NUMPY])


def test_this_environment_has_one_opencv(capsys):
    import cv2

    owner = single_owner("cv2")
    assert owner.distribution == "opencv-contrib-python"
    assert owner.version.startswith(cv2.__version__)
    assert main(["cv2"]) == 0
    assert f"cv2 from opencv-contrib-python {owner.version}" in capsys.readouterr().out
    assert main(["no_such_module_anywhere"]) == 1


def test_provenance_blocks_and_footnote():
    from hmr_ros.provenance import footnote, machine_info, provenance

    prov = provenance()
    assert set(prov) == {"machine", "environment"}
    assert set(machine_info()) == set(prov["machine"]) >= {"cpu_count", "torch", "cuda"}
    env = prov["environment"]
    note = footnote(env)
    assert note.startswith("Environment: torch ") and env["opencv"]["build_sha256"] in note
    assert footnote(None) == "" and footnote({}) == ""
