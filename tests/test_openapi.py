"""The committed OpenAPI document is what the app generates."""

from app.openapi import DOCUMENT, generate, render


def test_committed_openapi_document_is_current() -> None:
    committed = DOCUMENT.read_text()
    assert committed == render(generate()), (
        "openapi/openapi.json is stale: run `python -m app.openapi` and commit the result"
    )


def test_every_operation_documents_problem_responses() -> None:
    document = generate()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path in ("/healthz", "/readyz"):
                continue
            assert "422" in operation["responses"], (method, path)
            assert "401" in operation["responses"], (method, path)
