"""Discovery for agents and x402 directories: /.well-known/x402, /llms.txt, and the Bazaar
extension every 402 carries, read with the official x402 SDK."""

from __future__ import annotations

from x402.extensions.bazaar import (
    BodyDiscoveryExtension,
    DiscoveryResource,
    extract_discovery_info,
    validate_discovery_extension,
)
from x402.extensions.bazaar.types import parse_discovery_extension
from x402.schemas import PaymentPayload, PaymentRequired, PaymentRequirements

from tests.support.gateway_app import (
    TEST_RECIPIENT,
    UNSET,
    running_app,
    settings_for,
    write_catalog,
)
from tests.support.hf_cache import cache_model, use_hub
from tests.support.x402_app import unb64

SERVER = "http://gpubridge.test"
TAGS = ["ai", "inference", "llm", "image-generation", "speech"]


def paying(required: PaymentRequired) -> PaymentPayload:
    """The payment payload the SDK's client builds from a 402: it echoes the resource and the
    extensions (a facilitator catalogs the resource from them)."""
    return PaymentPayload(
        x402_version=2,
        payload={},
        accepted=required.accepts[0],
        resource=required.resource,
        extensions=required.extensions,
    )


# -- the 402 ---------------------------------------------------------------------------------
async def test_a_402_carries_a_bazaar_extension_the_sdk_parses_validates_and_catalogs(gateway):
    _, client = gateway
    body = {"service": "llm-4090", "input": {"prompt": "What is x402?", "max_tokens": 64}}

    response = await client.post("/run", json=body)

    assert response.status_code == 402
    required = PaymentRequired.model_validate(unb64(response.headers["payment-required"]))
    assert required.resource is not None
    assert required.resource.service_name == "gpubridge"
    assert required.resource.tags == TAGS
    assert required.extensions is not None
    extension = parse_discovery_extension(required.extensions["bazaar"])
    assert isinstance(extension, BodyDiscoveryExtension)
    assert validate_discovery_extension(extension).valid
    # The example is made from the catalog, never from the caller's own input.
    assert extension.info.input.body == {"service": "llm-4090", "input": {"prompt": "Hello, world"}}
    found = extract_discovery_info(paying(required), required.accepts[0])
    assert found is not None
    assert (found.resource_url, found.method) == (f"{SERVER}/run", "POST")
    assert (found.service_name, found.tags) == ("gpubridge", TAGS)
    v1 = response.json()["accepts"][0]
    found_v1 = extract_discovery_info({"x402Version": 1}, v1)
    assert found_v1 is not None and found_v1.method == "POST"


# -- /.well-known/x402 ---------------------------------------------------------------------
async def test_the_well_known_document_lists_run_for_each_service_as_its_402_would(packaged):
    app, client = packaged

    response = await client.get("/.well-known/x402")

    assert response.status_code == 200
    document = response.json()
    assert document["version"] == 1
    assert document["resources"] == [f"{SERVER}/run"]
    assert "/llms.txt" in document["instructions"]
    catalog = app.state.gateway.catalog
    items = document["items"]
    assert [item["extensions"]["bazaar"]["info"]["input"]["body"]["service"] for item in items] == [
        key for key, service in catalog.services.items() if service.backends
    ]
    assert document["pagination"] == {"limit": len(items), "offset": 0, "total": len(items)}
    for item in items:
        listed = DiscoveryResource(
            resource=item["resource"],
            type=item["type"],
            x402_version=item["x402Version"],
            accepts=item["accepts"],
            last_updated=item["lastUpdated"],
            description=item["description"],
            mime_type=item["mimeType"],
            service_name=item["serviceName"],
            tags=item["tags"],
            extensions=item["extensions"],
        )
        assert {k: v for k, v in item.items() if k != "pricing"} == listed.to_dict()
        accepts = PaymentRequirements.model_validate(item["accepts"][0])
        assert accepts.pay_to == TEST_RECIPIENT
        bazaar = parse_discovery_extension(item["extensions"]["bazaar"])
        assert validate_discovery_extension(bazaar).valid
        # Posting the example gets a 402 for exactly these terms.
        answer = await client.post("/run", json=bazaar.info.input.body)  # type: ignore[union-attr]
        assert answer.status_code == 402
        assert unb64(answer.headers["payment-required"])["accepts"] == item["accepts"]
        # Proxies commonly cap a response's headers at 8 KiB.
        assert len(answer.headers["payment-required"]) < 8 * 1024
        key = item["extensions"]["bazaar"]["info"]["input"]["body"]["service"]
        price = catalog.services[key].price
        assert item["pricing"]["micros"] == price.micros
        assert item["pricing"]["unit"] == price.unit


async def test_a_service_without_a_backend_is_not_listed(gateway):
    _, client = gateway

    items = (await client.get("/.well-known/x402")).json()["items"]

    services = [item["extensions"]["bazaar"]["info"]["input"]["body"]["service"] for item in items]
    assert services == ["llm-4090", "embedding-l4"]


async def test_with_x402_off_the_well_known_document_is_a_404_saying_why(
    database, database_url, tmp_path
):
    catalog = write_catalog(tmp_path / "catalog.yaml")
    settings = settings_for(database_url, tmp_path, catalog, x402_pay_to=UNSET)
    async with running_app(settings) as (_, client):
        response = await client.get("/.well-known/x402")
        llms = await client.get("/llms.txt")

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "x402_disabled"
    assert "API key" in error["message"]
    assert llms.status_code == 200
    assert "x402: payments per request are off on this server" in llms.text
    assert "/.well-known/x402" not in llms.text


async def test_the_service_name_tags_and_icon_come_from_the_settings(
    database, database_url, tmp_path, monkeypatch
):
    hub = use_hub(monkeypatch, tmp_path / "hub", offline=True)
    cache_model(hub, "Salesforce/blip-image-captioning-large", {"config.json": b"{}"})
    catalog = write_catalog(tmp_path / "catalog.yaml")
    settings = settings_for(
        database_url,
        tmp_path,
        catalog,
        x402_service_name="Acme GPUs",
        x402_service_tags=["ai", "gpu"],
        x402_service_icon_url="https://acme.example.com/icon.png",
    )
    async with running_app(settings) as (_, client):
        response = await client.post(
            "/run", json={"service": "caption", "input": {"image_url": "https://a.example/b"}}
        )
        listed = (await client.get("/.well-known/x402")).json()["items"][0]

    resource = unb64(response.headers["payment-required"])["resource"]
    assert resource["serviceName"] == listed["serviceName"] == "Acme GPUs"
    assert resource["tags"] == listed["tags"] == ["ai", "gpu"]
    assert resource["iconUrl"] == listed["iconUrl"] == "https://acme.example.com/icon.png"


async def test_the_document_links_to_itself_from_the_public_url(database, database_url, tmp_path):
    catalog = write_catalog(tmp_path / "catalog.yaml")
    settings = settings_for(database_url, tmp_path, catalog, public_url="https://gpu.example.com")
    async with running_app(settings) as (_, client):
        document = (await client.get("/.well-known/x402")).json()

    assert document["resources"] == ["https://gpu.example.com/run"]
    assert all(item["resource"] == "https://gpu.example.com/run" for item in document["items"])
