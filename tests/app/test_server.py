"""The explorer's server through Starlette's TestClient, against the tiny in-process ensemble: every
number and image it sends is compared with the model's own methods."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from tests.app.conftest import make_dataset, make_model, one_thread, png_pixels, smooth_png
from viscoin.app.state import Explorer, RequestError
from viscoin.data.transforms import decode_image_bytes
from viscoin.interpret.amplify import predict
from viscoin.utils.figures import image_array

pytest.importorskip("starlette")
pytest.importorskip("httpx")  # Starlette's TestClient

from starlette.testclient import TestClient

from viscoin.app.server import CSP, create_app

MAX_BYTES = 64 * 1024
MAX_PIXELS = 100 * 100
TOP_K = 3


@pytest.fixture(scope="module")
def model():
    with one_thread():
        return make_model()


@pytest.fixture(scope="module")
def dataset():
    return make_dataset()


@pytest.fixture(scope="module")
def explorer(model, dataset) -> Explorer:
    return Explorer(
        model,
        dataset,
        name="tiny",
        dataset_name="tiny",
        top_k=TOP_K,
        max_upload_bytes=MAX_BYTES,
        max_upload_pixels=MAX_PIXELS,
    )


@pytest.fixture(scope="module")
def client(explorer):
    with TestClient(create_app(explorer)) as client:
        yield client


def _post(client, url: str, data) -> object:
    return client.post(url, json=data)


def _error(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and body["error"], body
    return body["error"]


def test_page_is_self_contained(client, explorer):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-security-policy"] == CSP
    page = response.text
    for url in re.findall(r'(?:src|href|action)="([^"]*)"', page):
        assert url.startswith(("data:", "/", "#")) and not url.startswith("//"), url
    assert '<link rel="stylesheet"' not in page and "<script src" not in page
    embedded = re.search(r'<script type="application/json" id="explorer-info">(.*?)</script>', page)
    assert json.loads(embedded.group(1)) == explorer.info() == client.get("/api/info").json()
    # the class names reach the page as text, escaped (CLASSES has none to escape, so a check of
    # the option list suffices)
    assert all(f">{name}</option>" in page for name in explorer.classes)


def test_image_list_pages_and_filters(client, dataset):
    listing = client.get("/api/images", params={"per_page": 5}).json()
    assert listing["total"] == len(dataset) and listing["pages"] == 3 and listing["page"] == 0
    assert [item["index"] for item in listing["items"]] == [0, 1, 2, 3, 4]
    last = client.get("/api/images", params={"per_page": 5, "page": 2}).json()
    assert [item["index"] for item in last["items"]] == [10, 11]
    one_class = client.get("/api/images", params={"label": 1}).json()
    labels = dataset.tensors[1]
    assert [item["index"] for item in one_class["items"]] == torch.nonzero(labels == 1)[
        :, 0
    ].tolist()
    assert {item["name"] for item in one_class["items"]} == {dataset.classes[1]}
    assert "out of range" in _error(
        client.get("/api/images", params={"page": 3, "per_page": 5}), 404
    )
    assert "class 7 is out of range" in _error(client.get("/api/images", params={"label": 7}), 400)
    assert "integer" in _error(client.get("/api/images", params={"page": "x"}), 400)
    thumb = client.get("/api/images/4.png")
    assert thumb.headers["content-type"] == "image/png"
    assert np.array_equal(png_pixels(thumb.content), image_array(dataset[4][0]))
    assert "out of range" in _error(client.get("/api/images/12.png"), 404)


def test_select_predicts_as_the_model_does(client, model, dataset):
    answer = _post(client, "/api/select", {"index": 3}).json()
    image = dataset[3][0]
    expected = model.explain(image[None], top_k=TOP_K)
    assert answer["id"] == "d3" and answer["label"] == dataset.classes[int(dataset[3][1])]
    assert answer["input_prediction"]["f"]["name"] == expected.f_names[0]
    assert answer["input_prediction"]["g"]["name"] == expected.g_names[0]
    assert answer["input_prediction"]["g"]["prob"] == pytest.approx(float(expected.g_probs.max()))
    assert answer["input_prediction"]["f"]["prob"] == pytest.approx(float(expected.f_probs.max()))
    assert [c["concept"] for c in answer["concepts"]] == expected.top_concepts[0].tolist()
    np.testing.assert_allclose(answer["relevance"], expected.relevance[0].numpy(), rtol=1e-5)
    np.testing.assert_allclose(
        [c["activation"] for c in answer["concepts"]],
        expected.activations[0, expected.top_concepts[0]].numpy(),
        rtol=1e-5,
    )
    assert np.array_equal(png_pixels(answer["input"]), image_array(image))
    reconstruction = expected.reconstructions
    assert np.array_equal(png_pixels(answer["reconstruction"]), image_array(reconstruction[0]))
    on_it = predict(model, reconstruction)
    assert answer["prediction"]["g"]["class"] == int(on_it.g_class[0])
    assert answer["prediction"]["f"]["prob"] == pytest.approx(float(on_it.f_prob[0]), rel=1e-5)


def test_sliders_regenerate_with_one_intervention(client, model, dataset):
    selected = _post(client, "/api/select", {"index": 5}).json()
    first, second = (c["concept"] for c in selected["concepts"][:2])
    lambdas = {str(first): 2.5, str(second): 0.0}
    answer = _post(client, "/api/regenerate", {"image": "d5", "lambdas": lambdas}).json()
    assert answer["image"] != selected["reconstruction"]
    # the same intervention, computed here from the model's output on the image
    with torch.no_grad():
        out = model(dataset[5][0][None])
        maps = out.concept_maps.clone()
        maps[0, first] *= 2.5
        maps[0, second] = 0.0
        expected = model.decode_intervention(maps, out, "isolated")
    assert np.array_equal(png_pixels(answer["image"]), image_array(expected[0]))
    p = predict(model, expected)
    for name, cls, prob in (("f", p.f_class, p.f_prob), ("g", p.g_class, p.g_prob)):
        assert answer["prediction"][name]["class"] == int(cls[0])
        assert answer["prediction"][name]["name"] == model.class_names[int(cls[0])]
        assert answer["prediction"][name]["prob"] == pytest.approx(float(prob[0]), rel=1e-5)
    # every λ = 1 gives the reconstruction back; no λ at all is the same
    ones = _post(client, "/api/regenerate", {"image": "d5", "lambdas": {str(first): 1}}).json()
    none = _post(client, "/api/regenerate", {"image": "d5"}).json()
    assert ones["image"] == none["image"]
    assert (
        np.abs(png_pixels(ones["image"]).astype(int) - png_pixels(selected["reconstruction"])).max()
        <= 1
    )
    # a dataset image no longer held is analysed again
    for index in range(12):
        _post(client, "/api/select", {"index": index})
    again = _post(client, "/api/regenerate", {"image": "d5", "lambdas": lambdas}).json()
    assert again["image"] == answer["image"]


def test_bad_requests_get_a_message_and_the_server_keeps_serving(client):
    _post(client, "/api/select", {"index": 0})
    bad = [
        ({"image": "d0", "lambdas": {"0": 4.5}}, 400, "from 0 to 4"),
        ({"image": "d0", "lambdas": {"0": -1}}, 400, "from 0 to 4"),
        ({"image": "d0", "lambdas": {"0": "2"}}, 400, "must be a number"),
        ({"image": "d0", "lambdas": {"9": 2}}, 400, "concept index 9 is out of range"),
        ({"image": "d0", "lambdas": {"x": 2}}, 400, "not an integer"),
        ({"image": "d0", "lambdas": [1, 2]}, 400, "lambdas must be an object"),
        ({"image": "d99", "lambdas": {}}, 404, "image index 99 is out of range"),
        ({"image": "u0123", "lambdas": {}}, 404, "upload it again"),
        ({"image": 3}, 400, "named by a string"),
        ({"lambdas": {}}, 400, "send {"),
    ]
    for body, status, message in bad:
        assert message in _error(_post(client, "/api/regenerate", body), status), body
    nan = client.post(
        "/api/regenerate",
        content='{"image": "d0", "lambdas": {"0": NaN}}',
        headers={"content-type": "application/json"},
    )
    assert "from 0 to 4" in _error(nan, 400)
    assert "not valid JSON" in _error(
        client.post("/api/select", content="{", headers={"content-type": "application/json"}), 400
    )
    assert "as JSON" in _error(client.post("/api/select", content='{"index": 1}'), 415)
    assert "out of range" in _error(_post(client, "/api/select", {"index": 12}), 404)
    assert "integer" in _error(_post(client, "/api/select", {"index": "1"}), 400)
    assert client.get("/api/info").status_code == 200


def _upload(client, data, name: str = "photo.png", kind: str = "application/octet-stream"):
    return client.post(
        "/api/upload", content=data, headers={"content-type": kind, "x-filename": name}
    )


def test_uploads(client, model):
    assert "cannot decode notes.txt as an image" in _error(
        _upload(client, b"just some text", "notes.txt"), 415
    )
    assert client.get("/api/info").status_code == 200  # still serving
    png = smooth_png(48, 40)
    assert "corrupt or truncated" in _error(_upload(client, png[: len(png) // 2]), 422)
    assert "is empty" in _error(_upload(client, b""), 400)
    assert "Content-Type" in _error(_upload(client, png, kind="text/plain"), 415)
    answer = _upload(client, png, "photo%20one.png").json()
    assert answer["name"] == "photo one.png" and answer["label"] is None
    assert answer["note"].startswith("resized from 48×40 (short side to 36 px) and center-cropped")
    prepared = model.prepare(decode_image_bytes(png))
    assert np.array_equal(png_pixels(answer["input"]), image_array(prepared[0]))
    expected = model.explain(prepared, top_k=TOP_K)
    assert [c["concept"] for c in answer["concepts"]] == expected.top_concepts[0].tolist()
    assert answer["input_prediction"]["g"]["name"] == expected.g_names[0]
    k = answer["concepts"][0]["concept"]
    regenerated = _post(client, "/api/regenerate", {"image": answer["id"], "lambdas": {k: 3}})
    assert regenerated.status_code == 200
    # an R × R upload is used as it is
    same = _upload(client, smooth_png(32, 32, seed=2)).json()
    assert same["note"] == "" and same["id"] != answer["id"]


def test_oversize_uploads_are_refused(client, explorer, monkeypatch):
    big = b"\0" * (MAX_BYTES + 1)
    with pytest.raises(RequestError, match="too large") as refused:
        explorer.upload(big)
    assert refused.value.status == 413
    # the server stops reading at the limit: the bytes never reach the explorer
    reached = []
    monkeypatch.setattr(explorer, "upload", lambda data, name="": reached.append(len(data)))
    assert "too large" in _error(_upload(client, big), 413)
    streamed = _upload(client, iter([big[:40000], big[40000:]]))  # no Content-Length
    assert "too large" in _error(streamed, 413)
    assert reached == []
    monkeypatch.undo()
    assert "too many pixels (120×120)" in _error(_upload(client, smooth_png(120, 120)), 413)
    assert _upload(client, smooth_png(40, 40)).status_code == 200


def test_concept_page_reuses_the_atlas_card(client, explorer, dataset):
    page = client.get("/concepts/2")
    assert page.status_code == 200 and page.headers["content-security-policy"] == CSP
    assert page.text.count('<article class="concept-card"') == 1
    assert 'id="concept-2"' in page.text and "Most activating images" in page.text
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page.text)
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)
    for src in sources:
        png_pixels(src)
    top = explorer.analytics().top_images(2, 6)
    assert f"image {top[0][0]}, a top image of concept 2" in page.text
    _post(client, "/api/select", {"index": 7})
    both = client.get("/concepts/2", params={"image": "d7"}).text
    assert both.count('<article class="concept-card"') == 2 and "test image 7" in both
    assert "see the card above" in both
    assert "out of range" in _error(client.get("/concepts/6"), 404)


def test_uploads_only_without_a_dataset(model):
    alone = Explorer(model, None, name="bundle", dataset_note="this bundle names no dataset")
    with TestClient(create_app(alone)) as client:
        assert alone.info()["dataset"] is None
        assert "this bundle names no dataset" in client.get("/").text
        assert "no dataset is loaded" in _error(client.get("/api/images"), 404)
        assert "no dataset" in _error(_post(client, "/api/select", {"index": 0}), 404)
        empty = client.get("/concepts/1").text
        assert "<article" not in empty and "Pick an image in the explorer first" in empty
        upload = _upload(client, smooth_png(32, 32)).json()
        card = client.get("/concepts/1", params={"image": upload["id"]}).text
        assert card.count('<article class="concept-card"') == 1 and "by relevance on" in card


def test_other_hosts_are_refused(explorer):
    app = create_app(explorer, allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://127.0.0.1:7860") as local:
        assert local.get("/api/info").status_code == 200
    with TestClient(app, base_url="http://rebound.example:7860") as other:
        assert other.get("/api/info").status_code == 400


def test_a_failure_is_a_500_answer_and_the_next_request_works(explorer, monkeypatch):
    def broken(*args):
        raise RuntimeError("boom")

    with TestClient(create_app(explorer), raise_server_exceptions=False) as client:
        monkeypatch.setattr(explorer, "regenerate", broken)
        failed = client.post("/api/regenerate", json={"image": "d0"})
        assert "RuntimeError: boom" in _error(failed, 500)
        monkeypatch.undo()
        assert client.post("/api/regenerate", json={"image": "d0"}).status_code == 200


def test_request_error_keeps_its_status():
    assert RequestError("x", 413).status == 413 and RequestError("x").status == 400
