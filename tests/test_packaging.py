"""The wheel and the sdist, built from a copy of this checkout: what they contain and their metadata.

One build (``python -m build --no-isolation``: the sdist, then the wheel from the sdist, so the sdist
must be complete enough to build) of a copy of the source tree, so the checkout is never written to.
A few seconds; the timeout bounds it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.support.airflow_home import REPO

pytestmark = pytest.mark.timeout(180)

EXAMPLE_DAGS = ("alation_outbox_replay", "alation_postgres", "alation_preflight", "alation_quickstart")
#: Not copied into the build's source tree: local state, caches, other builds.
IGNORED = (".git", ".venv", ".hypothesis", ".ruff_cache", ".pytest_cache", "__pycache__", "build", "dist")


@dataclass
class Dists:
    wheel_files: set[str]
    wheel_metadata: Message
    wheel_entry_points: str
    sdist_files: set[str]
    sdist_metadata: Message


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dists]:
    root = tmp_path_factory.mktemp("packaging")
    source, out = root / "src", root / "dist"
    shutil.copytree(
        REPO,
        source,
        symlinks=True,
        ignore=lambda _dir, names: [n for n in names if n in IGNORED or n.endswith(".egg-info")],
    )
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as zf:
        wheel_files = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in wheel_files if n.split("/")[0].endswith(".dist-info"))
        wheel_metadata = Parser().parsestr(zf.read(f"{dist_info}/METADATA").decode())
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    with tarfile.open(sdist) as tf:
        prefix = sdist.name.removesuffix(".tar.gz") + "/"
        sdist_files = {m.name.removeprefix(prefix) for m in tf.getmembers() if m.isfile()}
        pkg_info = tf.extractfile(f"{prefix}PKG-INFO")
        assert pkg_info is not None
        sdist_metadata = Parser().parsestr(pkg_info.read().decode())
    yield Dists(wheel_files, wheel_metadata, entry_points, sdist_files, sdist_metadata)
    shutil.rmtree(root, ignore_errors=True)


def test_the_wheel_ships_the_example_dags_types_and_licence(dists: Dists) -> None:
    files = dists.wheel_files
    for dag in EXAMPLE_DAGS:
        assert f"airflow_provider_alation/example_dags/{dag}.py" in files, dag
    assert "airflow_provider_alation/example_dags/__init__.py" in files
    assert "airflow_provider_alation/py.typed" in files
    assert "airflow_provider_alation/ui/page.html" in files  # the Alation lineage page
    # The stand-in is a documented test utility, shipped on purpose.
    assert "airflow_provider_alation/testing/fake_alation.py" in files
    licences = {name.rsplit("/", 1)[1] for name in files if ".dist-info/licenses/" in name}
    assert licences == {"LICENSE", "NOTICE"}
    # Nothing but the package and its metadata: no tests, demo, bench or the old dags_examples/.
    assert {name.split("/")[0] for name in files} == {
        "airflow_provider_alation",
        next(n.split("/")[0] for n in files if n.split("/")[0].endswith(".dist-info")),
    }


def test_the_sdist_is_a_complete_source_tree(dists: Dists) -> None:
    files = dists.sdist_files
    expected = {
        "LICENSE",
        "NOTICE",
        "README.md",
        "BENCHMARKS.md",
        "CHANGELOG.md",
        "pyproject.toml",
        "setup.cfg",  # the pytest settings (markers, timeout)
        "MANIFEST.in",
        "airflow_provider_alation/py.typed",
        "tests/conftest.py",
        "tests/support/spec.py",
        "tests/support/airflow_home.py",
        "scripts/test.sh",
        "scripts/bootstrap.sh",
        "scripts/demo.sh",
        "demo/quickstart.py",
        "bench/compare.py",
        "bench/data/events.json",
        ".ci/run",
    }
    expected |= {f"airflow_provider_alation/example_dags/{dag}.py" for dag in EXAMPLE_DAGS}
    expected |= {str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")}
    expected |= {str(p.relative_to(REPO)) for p in (REPO / "tests" / "dags").glob("*.py")}
    expected |= {str(p.relative_to(REPO)) for p in (REPO / "tests" / "deployment_dags").glob("*.py")}
    assert expected <= files, sorted(expected - files)
    assert not [f for f in files if f.endswith((".pyc", ".pyo")) or "__pycache__" in f]


@pytest.mark.parametrize("which", ["wheel", "sdist"])
def test_metadata(dists: Dists, which: str) -> None:
    meta = dists.wheel_metadata if which == "wheel" else dists.sdist_metadata
    assert tuple(map(int, meta["Metadata-Version"].split("."))) >= (2, 4)  # 2.4: License-Expression
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["License"] is None  # the deprecated free-text field is gone
    assert sorted(meta.get_all("License-File") or []) == ["LICENSE", "NOTICE"]
    assert not [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    classifiers = meta.get_all("Classifier") or []
    for classifier in ("Framework :: Apache Airflow :: Provider", "Typing :: Typed"):
        assert classifier in classifiers

    urls = dict(entry.split(", ", 1) for entry in meta.get_all("Project-URL") or [])
    assert {"Documentation", "Source", "Changelog"} <= set(urls), urls
    assert all(url.startswith("https://") for url in urls.values()), urls

    requires = {Requirement(r).name: Requirement(r) for r in meta.get_all("Requires-Dist") or []}
    airflow = requires["apache-airflow"]
    assert airflow.marker is None
    assert airflow.specifier.contains("3.1.0") and airflow.specifier.contains("2.10.0")
    assert not airflow.specifier.contains("4.0.0"), str(airflow.specifier)
    for name in ("apache-airflow-providers-openlineage", "openlineage-python"):
        spec = requires[name].specifier
        assert any(s.operator == "<" for s in spec), f"{name} has no upper bound: {spec}"


def test_entry_points(dists: Dists) -> None:
    sections: dict[str, dict[str, str]] = {}
    current = ""
    for line in dists.wheel_entry_points.splitlines():
        line = line.strip()
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
        elif "=" in line:
            name, _, target = line.partition("=")
            sections[current][name.strip()] = target.strip()
    assert sections["apache_airflow_provider"] == {
        "provider_info": "airflow_provider_alation.get_provider_info:get_provider_info"
    }
    assert sections["airflow.plugins"] == {
        "alation": "airflow_provider_alation.plugins.alation:AlationPlugin"
    }
    assert sections["console_scripts"] == {"airflow-alation": "airflow_provider_alation.commands.cli:main"}


def test_example_dags_are_found_from_the_installed_package() -> None:
    """The README's way to find the example DAGs: the package's folder, not the checkout's."""
    from airflow_provider_alation import example_dags

    assert sorted(p.stem for p in example_dags.DAG_FILES) == sorted(EXAMPLE_DAGS)
    assert all(p.parent == Path(example_dags.__file__).parent for p in example_dags.DAG_FILES)


def test_the_stand_in_has_a_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_alation.testing.fake_alation", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--token" in result.stdout and "--tls-dir" in result.stdout
