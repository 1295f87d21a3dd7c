"""The app's pyproject.toml: components, run-config defaults and overrides, federations."""

from __future__ import annotations

from pathlib import Path

import pytest
from stamen.common.config import flatten_dict, parse_user_config, unflatten_dict
from stamen.common.errors import ConfigError
from stamen.common.project import fuse_run_config, open_project, read_project

STAMEN_APP = """
[project]
name = "demo"
version = "1.0.0"

[tool.stamen.app.components]
serverapp = "server:app"
clientapp = "client:app"

[tool.stamen.app.config]
num-server-rounds = 3
lr = 0.1
optimizer = "sgd"
proximal = false

[tool.stamen.app.config.model]
width = 16

[tool.stamen.federations]
default = "local"

[tool.stamen.federations.local]
options.num-supernodes = 4
"""

FLOWER_APP = """
[project]
name = "flowerapp"
version = "0.2.0"

[tool.flwr.app]
publisher = "someone"

[tool.flwr.app.components]
serverapp = "pkg.server_app:app"
clientapp = "pkg.client_app:app"

[tool.flwr.app.config]
num-server-rounds = 5

[tool.flwr.federations]
default = "local-simulation"
"""


def project_dir(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(text)
    return tmp_path


def test_stamen_tables_give_components_defaults_and_federations(tmp_path: Path) -> None:
    project = read_project(project_dir(tmp_path, STAMEN_APP))
    assert (project.name, project.version) == ("demo", "1.0.0")
    assert project.component("serverapp", None, "--server-app") == "server:app"
    assert project.component("clientapp", "other:app", "--client-app") == "other:app"
    assert project.config == {
        "num-server-rounds": 3,
        "lr": 0.1,
        "optimizer": "sgd",
        "proximal": False,
        "model.width": 16,
    }
    assert project.federations["default"] == "local"


def test_flower_tables_are_read_when_stamen_has_none(tmp_path: Path) -> None:
    project = read_project(project_dir(tmp_path, FLOWER_APP))
    assert project.component("serverapp", None, "--server-app") == "pkg.server_app:app"
    assert project.config == {"num-server-rounds": 5}
    assert project.federations == {"default": "local-simulation"}


def test_stamen_tables_win_over_flower_ones(tmp_path: Path) -> None:
    text = FLOWER_APP + "\n[tool.stamen.app.config]\nnum-server-rounds = 1\n"
    project = read_project(project_dir(tmp_path, text))
    assert project.config == {"num-server-rounds": 1}
    assert project.components["clientapp"] == "pkg.client_app:app"  # only flwr declares them


def test_overrides_replace_defaults(tmp_path: Path) -> None:
    project_dir(tmp_path, STAMEN_APP)
    _, config = open_project(tmp_path, "num-server-rounds=7 model.width=8 lr=1")
    assert config == {
        "num-server-rounds": 7,
        "lr": 1.0,
        "optimizer": "sgd",
        "proximal": False,
        "model.width": 8,
    }
    assert type(config["lr"]) is float  # an int for a float default is taken as a float


def test_an_inline_table_override_is_flattened(tmp_path: Path) -> None:
    project_dir(tmp_path, STAMEN_APP)
    assert open_project(tmp_path, "model={width=4}")[1]["model.width"] == 4


def test_no_pyproject_takes_any_key(tmp_path: Path) -> None:
    project, config = open_project(tmp_path, "anything=1")
    assert project.path is None
    assert config == {"anything": 1}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            "num-server-round=2",
            "--run-config: the app declares no key 'num-server-round'; "
            "did you mean 'num-server-rounds'?",
        ),
        ("zzz=1", "declares no key 'zzz' (declared: lr, model.width,"),
        ("num-server-rounds=fast", "num-server-rounds='fast' is not an integer (the app's"),
        ("num-server-rounds=2.5", "is not an integer"),
        ("lr=fast", "lr='fast' is not a number (the app's default is 0.1)"),
        ("proximal=1", "proximal=1 is not true or false"),
        ("a=1, b=2", "--run-config: config entry 'a=1,': separate pairs with spaces"),
        ("lr", "--run-config: config entry 'lr': not key=value"),
    ],
)
def test_bad_overrides_are_one_line_errors(tmp_path: Path, overrides: str, message: str) -> None:
    project_dir(tmp_path, STAMEN_APP)
    with pytest.raises(ConfigError) as caught:
        open_project(tmp_path, overrides)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_declared_empty_table_refuses_every_key() -> None:
    with pytest.raises(ConfigError, match="its config table is empty"):
        fuse_run_config({}, {"x": 1})


def test_framework_keys_need_no_declaration() -> None:
    fused = fuse_run_config({"lr": 0.1}, {"max-failure-rate": 0.5, "seed": 3})
    assert fused == {"lr": 0.1, "max-failure-rate": 0.5, "seed": 3}


def test_text_defaults_take_any_value() -> None:
    assert fuse_run_config({"name": "a"}, {"name": 7}) == {"name": 7}


def test_a_missing_component_names_the_flag_and_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pass --server-app .*has no pyproject.toml.*--dir"):
        read_project(tmp_path).component("serverapp", None, "--server-app")
    project_dir(tmp_path, '[project]\nname = "x"\n')
    with pytest.raises(ConfigError, match=r"declares no clientapp"):
        read_project(tmp_path).component("clientapp", "", "APP")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tool.stamen.app\n", "is not valid TOML"),
        ("[tool.stamen.app]\nconfig = 3\n", "[tool.stamen.app.config] must be a table"),
        ("[tool.stamen.app.config]\nx = [1, 2]\n", "the value for key 'x' is a list"),
        ("[tool.stamen.app.components]\nserverapp = 1\n", "component 'serverapp' must be"),
    ],
)
def test_a_malformed_pyproject_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    project_dir(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        read_project(tmp_path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_directory_names_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--dir: .* is not a directory"):
        open_project(tmp_path / "nowhere")


def test_a_toml_file_gives_the_overrides(tmp_path: Path) -> None:
    path = tmp_path / "overrides.toml"
    path.write_text('lr = 0.5\n[model]\nwidth = 2\nname = "x"\n')
    assert parse_user_config(str(path)) == {"lr": 0.5, "model.width": 2, "model.name": "x"}
    with pytest.raises(ConfigError, match="cannot read the config file"):
        parse_user_config(str(tmp_path / "missing.toml"))


def test_flatten_and_unflatten_are_inverse() -> None:
    nested = {"a": {"b": 1, "c": {"d": "x"}}, "e": True}
    flat = flatten_dict(nested)
    assert flat == {"a.b": 1, "a.c.d": "x", "e": True}
    assert unflatten_dict(flat) == nested
