from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from gpubridge.engines.base import BackendConfig, Engine, EngineContext
from gpubridge.engines.openai_remote import OpenAIRemote
from gpubridge.engines.registry import BUILTIN_TYPES, EngineRegistry
from gpubridge.errors import ServiceUnavailable
from tests.support.scripted_engine import ScriptedEngine


def backend(name: str, type_: str = "scripted", **options: object) -> BackendConfig:
    return BackendConfig(name=name, type=type_, options=options)


def counting_registry() -> tuple[EngineRegistry, list[str]]:
    registry = EngineRegistry()
    built: list[str] = []

    def create(config: BackendConfig, context: EngineContext) -> Engine:
        built.append(config.name)
        return ScriptedEngine(config.name)

    registry.register("scripted", create)
    return registry, built


def test_builtin_types_are_known() -> None:
    assert set(BUILTIN_TYPES) <= set(EngineRegistry().types)
    assert {"openai", "transformers-llm", "sentence-transformers"} <= set(BUILTIN_TYPES)


def test_one_engine_is_built_per_backend_and_reused() -> None:
    registry, built = counting_registry()
    first = registry.get(backend("a"))
    assert registry.get(backend("a")) is first
    assert registry.get(backend("b")) is not first
    assert built == ["a", "b"]


def test_backends_sharing_a_name_but_not_a_configuration_get_their_own_engines() -> None:
    registry, built = counting_registry()
    assert registry.get(backend("a", size=1)) is not registry.get(backend("a", size=2))
    assert built == ["a", "a"]


def test_an_unknown_type_is_service_unavailable_naming_the_known_ones() -> None:
    with pytest.raises(ServiceUnavailable) as caught:
        EngineRegistry().get(backend("a", "quantum"))
    assert "'quantum'" in caught.value.message
    assert "openai" in caught.value.message
    assert caught.value.code == "service_unavailable"


def test_a_factory_named_by_dotted_path_is_imported_when_first_used() -> None:
    registry = EngineRegistry({"remote": "sk-test"})
    registry.register("remote-openai", "gpubridge.engines.openai_remote:create")
    engine = registry.get(backend("remote", "remote-openai", base_url="http://127.0.0.1:1/v1"))
    assert isinstance(engine, OpenAIRemote)
    assert engine.name == "remote"


def test_a_factory_whose_module_is_missing_is_service_unavailable() -> None:
    registry = EngineRegistry()
    registry.register("ghost", "gpubridge.engines.no_such_runtime:create")
    with pytest.raises(ServiceUnavailable, match="not available"):
        registry.get(backend("a", "ghost"))


def test_a_missing_runtime_is_remembered_until_the_type_is_registered_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = EngineRegistry()
    registry.register("ghost", "gpubridge.engines.no_such_runtime:create")
    with pytest.raises(ServiceUnavailable):
        registry.get(backend("a", "ghost"))
    imports: list[str] = []
    monkeypatch.setattr("importlib.import_module", lambda name: imports.append(name))
    with pytest.raises(ServiceUnavailable, match="not available"):
        registry.get(backend("a", "ghost"))
    assert imports == []
    registry.register("ghost", lambda config, context: ScriptedEngine(config.name))
    assert registry.get(backend("b", "ghost")).name == "b"


async def test_close_unloads_every_engine_even_if_one_fails() -> None:
    registry = EngineRegistry()
    failing, fine = ScriptedEngine("failing"), ScriptedEngine("fine")

    attempted = []

    async def broken_unload() -> None:
        attempted.append(True)
        raise RuntimeError("stuck")

    failing.unload = broken_unload  # type: ignore[method-assign]
    engines = {"failing": failing, "fine": fine}
    registry.register("scripted", lambda config, context: engines[config.name])
    registry.get(backend("failing"))
    registry.get(backend("fine"))
    async with asyncio.timeout(10):
        await registry.close()
    assert attempted == [True]
    assert fine.unloaded


def test_the_gateway_side_of_the_engine_layer_imports_no_model_runtime() -> None:
    code = (
        "import sys\n"
        "import gpubridge.engines.registry, gpubridge.engines.router\n"
        "from gpubridge.engines.base import BackendConfig\n"
        "from gpubridge.engines.registry import EngineRegistry\n"
        "EngineRegistry().get(BackendConfig(name='r', type='openai',"
        " options={'base_url': 'http://127.0.0.1:1/v1'}))\n"
        "EngineRegistry().get(BackendConfig(name='l', type='transformers-llm'))\n"
        "EngineRegistry().get(BackendConfig(name='e', type='sentence-transformers'))\n"
        "heavy = {'torch', 'transformers', 'sentence_transformers'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
