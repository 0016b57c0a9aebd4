"""API key secrets and staff identities: `bulkex serve` refuses to start
without a pepper (unless told --insecure-no-pepper, or run as the demo), a
staff key names the person who holds it, and maker-checker compares people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import api._demo_setup
import api._server
from api._client import Client, RequestError
from api._harness import running_exchange
from api._keys import MIN_PEPPER_CHARS, PEPPER_ENV, KeyStore, pepper_problem
from api.cli import app
from tests.aio import run

pytestmark = pytest.mark.timeout(120)

GOOD_PEPPER = "x" * MIN_PEPPER_CHARS


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """`bulkex serve` with the server replaced by a recorder: the calls it would have made."""
    calls: list[dict[str, Any]] = []

    def fake_serve(settings: Any, **options: Any) -> None:
        calls.append({"settings": settings, **options})

    monkeypatch.setattr(api._server, "serve", fake_serve)
    return calls


def test_pepper_problem_names_what_is_missing() -> None:
    assert pepper_problem({}) == f"{PEPPER_ENV} is not set"
    assert pepper_problem({PEPPER_ENV: ""}) == f"{PEPPER_ENV} is not set"
    assert pepper_problem({PEPPER_ENV: "x" * (MIN_PEPPER_CHARS - 1)}) == (
        f"{PEPPER_ENV} has {MIN_PEPPER_CHARS - 1} characters, fewer than {MIN_PEPPER_CHARS}"
    )
    assert pepper_problem({PEPPER_ENV: GOOD_PEPPER}) is None


def test_serve_refuses_to_start_without_a_pepper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[dict[str, Any]]
) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'x.db'}"
    monkeypatch.delenv(PEPPER_ENV, raising=False)
    refused = runner.invoke(app, ["serve", "--database-url", url])
    assert refused.exit_code == 2, refused.output
    assert f"{PEPPER_ENV} is not set" in refused.output
    assert f"export {PEPPER_ENV}=" in refused.output  # says how to set one
    assert "--insecure-no-pepper" in refused.output
    monkeypatch.setenv(PEPPER_ENV, "short")
    too_short = runner.invoke(app, ["serve", "--database-url", url])
    assert too_short.exit_code == 2, too_short.output
    assert f"fewer than {MIN_PEPPER_CHARS}" in too_short.output
    assert served == []

    monkeypatch.delenv(PEPPER_ENV)
    insecure = runner.invoke(app, ["serve", "--database-url", url, "--insecure-no-pepper"])
    assert insecure.exit_code == 0, insecure.output
    monkeypatch.setenv(PEPPER_ENV, GOOD_PEPPER)
    peppered = runner.invoke(app, ["serve", "--database-url", url])
    assert peppered.exit_code == 0, peppered.output
    assert [call["settings"].database_url for call in served] == [url, url]


def test_the_demo_serves_without_a_pepper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[dict[str, Any]]
) -> None:
    """`python3 dev.py demo` runs `bulkex serve --demo` with no pepper set: it still starts."""
    monkeypatch.delenv(PEPPER_ENV, raising=False)
    monkeypatch.setattr(api._demo_setup, "prepare_demo", lambda *_args: ("RB-HRB400E-20", "3500.00", "M001"))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(app, ["serve", "--demo", "--no-simulate", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert len(served) == 1
    assert served[0]["schedule"] is False


def test_keys_create_requires_a_staff_keys_person(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'x.db'}"
    monkeypatch.setenv(PEPPER_ENV, GOOD_PEPPER)
    for subject in ([], [""], ["li wei"], ["a" * 49], ["li,wei"]):
        refused = runner.invoke(app, ["keys", "create", "staff", *subject, "--database-url", url])
        assert refused.exit_code == 2, (subject, refused.output)
        assert "names the person who holds it" in refused.output, subject
    created = runner.invoke(app, ["keys", "create", "staff", "li.wei", "--database-url", url])
    assert created.exit_code == 0, created.output
    assert "warning" not in created.output
    listed = runner.invoke(app, ["keys", "list", "--database-url", url])
    assert "staff     li.wei" in listed.output, listed.output
    monkeypatch.delenv(PEPPER_ENV)
    unsealed = runner.invoke(app, ["keys", "create", "trader", "M001", "--database-url", url])
    assert unsealed.exit_code == 0, unsealed.output
    assert f"warning: {PEPPER_ENV} is not set" in unsealed.output


def test_a_staff_keys_actor_is_its_person(tmp_path: Path) -> None:
    store = KeyStore(f"sqlite:///{tmp_path / 'x.db'}", GOOD_PEPPER, migrate=True)
    try:
        first = store.get(store.create("staff", "li.wei", "desk")[0])
        second = store.get(store.create("staff", "li.wei", "laptop")[0])
        other = store.get(store.create("staff", "wang.fang")[0])
        unnamed = store.get(store.create("staff", "", "made by code")[0])
        trader = store.get(store.create("trader", "M001")[0])
        with pytest.raises(ValueError, match="names the person"):
            store.create("staff", "", staff_name_required=True)
    finally:
        store.close()
    assert first is not None
    assert second is not None
    assert other is not None
    assert unnamed is not None
    assert trader is not None
    assert first.actor == second.actor == "staff:li.wei"
    assert other.actor == "staff:wang.fang"
    assert unnamed.actor == unnamed.key_id  # a staff key without a person acts as itself
    assert trader.actor == trader.key_id


def test_one_person_with_two_staff_keys_cannot_approve_their_own_withdrawal(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            ex.fund("M001")
            desk = Client(ex.url, *ex.keys.create("staff", "li.wei", "desk"))
            laptop = Client(ex.url, *ex.keys.create("staff", "li.wei", "laptop"))
            colleague = Client(ex.url, *ex.keys.create("staff", "wang.fang"))
            async with desk, laptop, colleague:
                await desk.request("request_withdrawal", withdrawal_id="w-1", amount="3000000.00", account="M001")
                with pytest.raises(RequestError) as refused:
                    await laptop.request("approve_withdrawal", withdrawal_id="w-1")
                assert refused.value.code == "SAME_APPROVER"
                approved = await colleague.request("approve_withdrawal", withdrawal_id="w-1")
                assert approved["withdrawal"]["status"] == "approved"

    run(main)
