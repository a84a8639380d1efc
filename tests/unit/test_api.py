"""gitquilt.load / Package browsing / node() paths / on-demand fetch / gitquilt.export."""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import tomllib
from pathlib import Path

import pytest

import gitquilt
from gitquilt.api import Directory, File, KeyNotFound, Package, _Context, attr_name
from gitquilt.errors import IntegrityError, MissingFragments, NotFound, QuiltError
from tests.unit.api_world import V1, V2, World, build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("api"))


def _objects(repo_root: Path) -> list[Path]:
    return [p for p in (repo_root / ".git" / "quilt" / "objects").rglob("*") if p.is_file()]


def _top_hash(pointer: bytes) -> str:
    return str(tomllib.loads(pointer.decode())["top_hash"])


# -- loading -----------------------------------------------------------------------------------
def test_load_work_tree_pointer(world: World) -> None:
    pkg = gitquilt.load("images", repo=world.src.root)
    assert isinstance(pkg, Package)
    assert pkg.top_hash == _top_hash(world.src.read("images.quilt"))
    assert pkg.rev is None and pkg.path == "images"
    assert pkg.meta == {"message": "second"}
    assert sorted(f.key for f in pkg.files()) == sorted(V2)
    assert pkg["README.md"].read_bytes() == b"version 2\n"


def test_load_accepts_the_pointer_path_and_an_absolute_path_without_repo(world: World) -> None:
    by_pointer = gitquilt.load("images.quilt", repo=world.src.root)
    absolute = gitquilt.load(world.src.root / "images")
    assert by_pointer.top_hash == absolute.top_hash == _top_hash(world.src.read("images.quilt"))


def test_load_at_a_tag_reads_git_objects_without_a_checkout(world: World) -> None:
    head = world.src.git("rev-parse", "HEAD").stdout
    status = world.src.git("status", "--porcelain").stdout
    pkg = gitquilt.load("images", rev="v1", repo=world.src.root)
    v1_pointer = world.src.git("show", "v1:images.quilt").stdout.encode()
    assert pkg.top_hash == _top_hash(v1_pointer) != _top_hash(world.src.read("images.quilt"))
    assert pkg.rev == "v1" and pkg.meta == {"message": "first"}
    assert "new.jpg" not in pkg.test and "new.jpg" in gitquilt.load("images", rev="main", repo=world.src.root).test
    assert pkg["README.md"].read_bytes() == b"version 1\n"
    # nothing was checked out: HEAD, the index and the work tree are as they were
    assert world.src.git("rev-parse", "HEAD").stdout == head
    assert world.src.git("status", "--porcelain").stdout == status
    assert world.src.read("images/README.md") == b"version 2\n"


def test_load_errors_are_quilt_errors_with_one_clear_line(world: World) -> None:
    with pytest.raises(NotFound, match="unknown revision 'nope'"):
        gitquilt.load("images", rev="nope", repo=world.src.root)
    with pytest.raises(NotFound, match="nothere is not a package"):
        gitquilt.load("nothere", repo=world.src.root)
    with pytest.raises(NotFound, match=r"other\.quilt does not exist at v1"):
        gitquilt.load("other", rev="v1", repo=world.src.root)


# -- browsing ----------------------------------------------------------------------------------
def test_attribute_access_follows_the_naming_rules(world: World) -> None:
    pkg = gitquilt.load("images", repo=world.src.root)
    node = pkg.test.n101085
    assert isinstance(node, File) and node.key == "test/101085.jpg"
    assert pkg.test.n101085_jpg.key == "test/101085.jpg"  # the full name works too
    assert isinstance(pkg.class_, Directory) and pkg.class_.key == "class"  # keyword → suffix
    assert pkg.class_.keys_.key == "class/keys.txt"  # a name the nodes use → suffix
    assert pkg.class_.keys() == ["keys.txt"]  # … while the method still works
    assert pkg.README.key == "README.md"
    assert pkg.train.img_003.key == "train/img_003.png"


def test_ambiguous_names_are_refused_and_full_names_reach_each_file(world: World) -> None:
    test = gitquilt.load("images", repo=world.src.root).test
    with pytest.raises(AttributeError, match=r"'photo' is ambiguous.*'test/photo.jpg', 'test/photo.png'"):
        test.photo  # noqa: B018
    assert test.photo_jpg.key == "test/photo.jpg" and test.photo_png.key == "test/photo.png"
    listed = dir(test)
    assert {"n101085", "n101087", "new", "photo_jpg", "photo_png", "keys", "files"} <= set(listed)
    assert "photo" not in listed
    with pytest.raises(AttributeError, match="has no child named 'nope'"):
        test.nope  # noqa: B018


@pytest.mark.parametrize(("name", "is_file", "expected"), [
    ("101085.jpg", True, "n101085"),
    ("101085.jpg", False, "n101085_jpg"),  # directories keep their whole name
    ("my-data.tar.gz", True, "my_data_tar"),
    ("v1.0", False, "v1_0"),
    ("class", False, "class_"),
    ("keys.txt", True, "keys_"),
    ("__init__.py", True, "n__init__"),
    (".env", True, "_env"),
    ("café", False, "caf_"),
    ("_state", False, "_state_"),  # an internal attribute of the nodes
])
def test_attr_name(name: str, is_file: bool, expected: str) -> None:
    assert attr_name(name, is_file) == expected
    assert expected.isidentifier()


def test_item_access_iteration_len_and_keys(world: World) -> None:
    pkg = gitquilt.load("images", repo=world.src.root)
    assert list(pkg) == pkg.keys() == ["README.md", "class", "test", "train"]
    assert len(pkg) == 4 and len(pkg.test) == 5 and len(pkg.train) == 13
    f = pkg["test/101085.jpg"]
    assert isinstance(f, File) and (f.name, f.size) == ("101085.jpg", len(V2["test/101085.jpg"]))
    assert f.sha256 == hashlib.sha256(V2["test/101085.jpg"]).hexdigest()
    assert pkg["test"].keys() == pkg["test/"].keys() == pkg.test.keys()
    assert pkg.test["101085.jpg"].key == "test/101085.jpg"
    assert "test/photo.png" in pkg and "test" in pkg and "test/none" not in pkg and 3 not in pkg
    assert pkg.get("missing") is None
    assert [name for name, _ in pkg.items()] == pkg.keys()
    assert [rel for rel, _ in pkg.test.walk()] == sorted(k[5:] for k in V2 if k.startswith("test/"))
    assert "images" in repr(pkg) and "test/" in repr(pkg)


def test_missing_key_raises_key_error_with_a_clear_message(world: World) -> None:
    pkg = gitquilt.load("images", repo=world.src.root)
    with pytest.raises(KeyError) as info:
        pkg["test/101086.jpg"]
    message = str(info.value)
    assert message.startswith("'test/101086.jpg' is not in package images (top hash ")
    assert "did you mean 'test/101087.jpg', 'test/101085.jpg'?" in message
    assert isinstance(info.value, KeyNotFound) and isinstance(info.value, QuiltError)
    with pytest.raises(KeyError, match=r"is not a valid key .*'\.\.' segment"):
        pkg["../images.quilt"]
    with pytest.raises(KeyError, match="'test/101085.jpg/' asks for a directory, but 'test/101085.jpg' is a file of package images"):
        pkg["test/101085.jpg/"]  # a trailing slash asks for a directory
    with pytest.raises(TypeError):
        pkg[0]  # type: ignore[index]


# -- node() paths --------------------------------------------------------------------------------
def test_node_returns_a_read_only_cache_path_holding_the_bytes(world: World) -> None:
    pkg = gitquilt.load("images", repo=world.src.root)
    path = pkg.test.n101085()
    assert isinstance(path, str)
    assert Path(path).read_bytes() == V2["test/101085.jpg"]
    assert Path(path).is_relative_to(world.src.root / ".git" / "quilt" / "objects")
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o222 == 0  # nobody but root can write through it
    assert pkg["test/101085.jpg"].open().read() == V2["test/101085.jpg"]


def test_a_cached_fragment_of_the_wrong_size_is_refused(world: World) -> None:
    clone = world.clone("damaged")
    pkg = gitquilt.load("images", repo=clone.root)
    path = Path(pkg.README())
    path.chmod(0o644)
    path.write_bytes(b"cut")
    with pytest.raises(IntegrityError, match=r"README\.md: the cached fragment .* is 3 bytes, the manifest says 10 "
                                             r"\(run: git quilt verify\)"):
        pkg.README()


def test_directory_call_gives_every_path_and_asa_applies_an_adapter(world: World) -> None:
    pkg = gitquilt.load("images", repo=world.src.root)
    paths = pkg.class_()
    assert list(paths) == ["keys.txt"] and Path(paths["keys.txt"]).read_bytes() == V2["class/keys.txt"]
    assert pkg.test(asa=lambda node: node.key) == "test"
    assert pkg.test.n101085(asa=lambda node: node.size) == len(V2["test/101085.jpg"])


def test_on_demand_fetch_into_an_empty_cache(world: World) -> None:
    clone = world.clone("fresh")
    assert _objects(clone.root) == []
    pkg = gitquilt.load("images", rev="v1", repo=clone.root)  # the manifest comes from the remote
    assert _objects(clone.root) == []  # … and no fragment yet
    path = pkg.test.n101085()
    assert Path(path).read_bytes() == V1["test/101085.jpg"]
    assert _objects(clone.root) == [Path(path)]  # exactly the one fragment asked for
    assert pkg.train.fetch() == 13 and pkg.train.fetch() == 0
    assert len(_objects(clone.root)) == 14
    assert not (clone.root / "images").exists()  # nothing was hydrated into the work tree


def test_missing_fragment_without_a_remote_names_what_to_do(world: World) -> None:
    clone = world.clone("no-remote")
    pkg = gitquilt.load("images", repo=clone.root)
    clone.quilt("remote", "remove", "origin", check=True)
    fresh = gitquilt.load("images", repo=clone.root)  # the manifest is cached now
    with pytest.raises(MissingFragments, match=r"images: test/101085\.jpg is not in the cache .*no remote"):
        fresh.test.n101085()
    assert pkg.top_hash == fresh.top_hash
    other = world.clone("no-remote-2")
    other.quilt("remote", "remove", "origin", check=True)
    with pytest.raises(NotFound, match="manifest .* is not in the cache; run: git quilt fetch images --rev v1"):
        gitquilt.load("images", rev="v1", repo=other.root)


def test_nodes_pickle_without_the_repository_and_reopen_it(world: World) -> None:
    pkg = gitquilt.load("images", repo=world.src.root)
    f = pickle.loads(pickle.dumps(pkg.test.n101085))
    assert f._ctx._ws is None  # nothing of the parent process travelled
    assert Path(f()).read_bytes() == V2["test/101085.jpg"]
    again = pickle.loads(pickle.dumps(pkg))
    assert again.test.n101087.read_bytes() == V2["test/101087.jpg"]


def test_context_reopens_workspace_and_remote_in_a_forked_process(world: World,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = gitquilt.load("images", repo=world.src.root)._state.ctx
    assert isinstance(ctx, _Context)
    ws, remote = ctx.workspace(), ctx.backend("test", [])
    assert ctx.workspace() is ws and ctx.backend("test", []) is remote
    pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: pid + 1)  # what a forked child sees
    assert ctx.workspace() is not ws
    assert ctx.backend("test", []) is not remote


# -- export and the package namespace -------------------------------------------------------------
def test_export_at_a_tag_fetches_what_it_needs(world: World, tmp_path: Path) -> None:
    clone = world.clone("export")
    result = gitquilt.export("images", tmp_path / "out", rev="v1", repo=clone.root)
    assert result.written == len(V1)
    for key, data in V1.items():
        assert (tmp_path / "out" / key).read_bytes() == data


def test_public_names_resolve() -> None:
    for name in gitquilt.__all__:
        assert getattr(gitquilt, name) is not None
    assert gitquilt.load is __import__("gitquilt.api").api.load
    assert gitquilt.asa.img.plot is not None and "load" in dir(gitquilt)
    with pytest.raises(AttributeError):
        gitquilt.nope  # noqa: B018


def test_single_file_package_call_returns_its_path(world: World) -> None:
    repo = world.clone("single")
    repo.write("model.bin", b"weights")
    repo.quilt("add", "model.bin", check=True)
    pkg = gitquilt.load("model.bin", repo=repo.root)
    assert pkg.is_file and Path(pkg()).read_bytes() == b"weights"
    assert not gitquilt.load("images", repo=world.src.root).is_file
