// The explorer's page: browse the split, upload an image, move the λ sliders. Every request goes
// to the server that sent the page; slider moves are debounced and a late answer to an older
// state is dropped, so the image always shows the sliders' latest state.
(() => {
  "use strict";
  const info = JSON.parse(document.getElementById("explorer-info").textContent);
  const $ = (id) => document.getElementById(id);
  const DEBOUNCE_MS = 60;
  let current = null; // the analysis of the image shown (server's answer to select / upload)
  let sent = 0; // number of the last regenerate request sent
  let timer = null;
  let page = 0;

  const call = async (url, options = {}) => {
    const response = await fetch(url, options);
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (!response.ok) {
      throw new Error(body && body.error ? body.error : `${response.status} ${response.statusText}`);
    }
    return body;
  };
  const post = (url, data) =>
    call(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(data),
    });
  const predictionText = (p) => `${p.name} ${p.prob.toFixed(2)}`;
  const showMessage = (text) => {
    $("message").textContent = text || "";
  };
  const uploadMessage = (text, error) => {
    const element = $("upload-message");
    element.textContent = text || "";
    element.classList.toggle("error", Boolean(error));
  };

  // -- browsing the split ------------------------------------------------------------------------
  const grid = $("grid");
  const markActive = () => {
    if (!grid) return;
    for (const button of grid.querySelectorAll(".thumb")) {
      button.classList.toggle("active", current !== null && current.id === `d${button.dataset.index}`);
    }
  };
  const loadPage = async () => {
    const query = new URLSearchParams({ page: String(page), per_page: String(info.per_page) });
    const label = $("class-filter").value;
    if (label !== "") query.set("label", label);
    try {
      const listing = await call(`/api/images?${query}`);
      grid.replaceChildren(
        ...listing.items.map((item) => {
          const button = document.createElement("button");
          button.type = "button";
          button.className = "thumb";
          button.dataset.index = String(item.index);
          button.title = `#${item.index} · ${item.name}`;
          const image = document.createElement("img");
          image.src = `/api/images/${item.index}.png`;
          image.alt = `${info.dataset.split} image ${item.index} (${item.name})`;
          button.append(image, `#${item.index}`);
          button.addEventListener("click", () => select(item.index));
          return button;
        }),
      );
      $("page-text").textContent =
        `page ${listing.page + 1} of ${listing.pages} · ${listing.total} images`;
      $("prev").disabled = listing.page <= 0;
      $("next").disabled = listing.page >= listing.pages - 1;
      markActive();
    } catch (error) {
      $("page-text").textContent = error.message;
    }
  };
  if (grid) {
    $("class-filter").addEventListener("change", () => {
      page = 0;
      loadPage();
    });
    $("prev").addEventListener("click", () => {
      page = Math.max(0, page - 1);
      loadPage();
    });
    $("next").addEventListener("click", () => {
      page += 1;
      loadPage();
    });
    loadPage();
  }

  // -- one image ---------------------------------------------------------------------------------
  const sliders = $("sliders");
  const addSlider = (k) => {
    if (sliders.querySelector(`[data-concept="${k}"]`)) return;
    const row = document.createElement("div");
    row.className = "concept-row";
    row.dataset.concept = String(k);
    const link = document.createElement("a");
    link.href = `/concepts/${k}?image=${encodeURIComponent(current.id)}`;
    link.target = "_blank";
    link.rel = "noopener";
    link.textContent = `concept ${k}`;
    const stats = document.createElement("span");
    stats.className = "stats";
    stats.textContent =
      `r ${current.relevance[k].toFixed(2)} · a ${current.activations[k].toPrecision(3)}`;
    const slider = document.createElement("input");
    slider.type = "range";
    slider.className = "lambda";
    slider.min = String(info.min_lambda);
    slider.max = String(info.max_lambda);
    slider.step = String(info.lambda_step);
    slider.value = "1";
    slider.setAttribute("aria-label", `λ of concept ${k}`);
    const value = document.createElement("output");
    value.textContent = "1";
    slider.addEventListener("input", () => {
      value.textContent = String(Number(slider.value));
      schedule();
    });
    row.append(link, stats, slider, value);
    sliders.append(row);
  };
  const lambdas = () => {
    const out = {};
    for (const slider of sliders.querySelectorAll("input.lambda")) {
      out[slider.closest(".concept-row").dataset.concept] = Number(slider.value);
    }
    return out;
  };
  const showPrediction = (prediction, f, g) => {
    $(f).textContent = predictionText(prediction.f);
    $(g).textContent = predictionText(prediction.g);
  };
  const show = (analysis) => {
    current = analysis;
    sent += 1; // an answer still on its way belongs to the previous image
    $("empty").hidden = true;
    $("explore").hidden = false;
    $("image-name").textContent = analysis.name;
    $("image-note").textContent = analysis.note;
    $("true-label").textContent = analysis.label === null ? "" : ` · true class ${analysis.label}`;
    $("input-view").src = analysis.input;
    $("generated-view").src = analysis.reconstruction;
    $("generated-caption").textContent = "reconstruction (every λ = 1)";
    showPrediction(analysis.input_prediction, "input-f", "input-g");
    showPrediction(analysis.prediction, "pred-f", "pred-g");
    $("timing").textContent = "";
    showMessage("");
    sliders.replaceChildren();
    for (const concept of analysis.concepts) addSlider(concept.concept);
    markActive();
  };
  const select = async (index) => {
    try {
      show(await post("/api/select", { index }));
    } catch (error) {
      showMessage(error.message);
    }
  };

  // -- the sliders -------------------------------------------------------------------------------
  const regenerate = async () => {
    if (current === null) return;
    const number = ++sent;
    const state = lambdas();
    const changed = Object.entries(state).filter(([, lam]) => lam !== 1);
    try {
      const answer = await post("/api/regenerate", { image: current.id, lambdas: state });
      if (number !== sent) return; // a newer state was sent meanwhile
      $("generated-view").src = answer.image;
      $("generated-caption").textContent = changed.length
        ? "regenerated with " + changed.map(([k, lam]) => `φ${k} × ${lam}`).join(", ")
        : "reconstruction (every λ = 1)";
      showPrediction(answer.prediction, "pred-f", "pred-g");
      $("timing").textContent = `regenerated in ${Math.round(answer.ms)} ms`;
      showMessage("");
    } catch (error) {
      if (number === sent) showMessage(error.message);
    }
  };
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(regenerate, DEBOUNCE_MS);
  };
  $("reset").addEventListener("click", () => {
    for (const slider of sliders.querySelectorAll("input.lambda")) {
      slider.value = "1";
      slider.nextElementSibling.textContent = "1";
    }
    schedule();
  });
  $("add-button").addEventListener("click", () => {
    const k = Number($("add-concept").value);
    if (current === null || !Number.isInteger(k) || k < 0 || k >= info.n_concepts) {
      showMessage(`a concept is a number from 0 to ${info.n_concepts - 1}`);
      return;
    }
    addSlider(k);
    showMessage("");
  });

  // -- uploads -----------------------------------------------------------------------------------
  $("upload").addEventListener("change", async (event) => {
    const input = event.target;
    const file = input.files && input.files[0];
    input.value = ""; // the same file can be picked again
    if (!file) return;
    if (file.size > info.max_upload_bytes) {
      const mib = (info.max_upload_bytes / 1048576).toFixed(0);
      uploadMessage(`${file.name} is too large: at most ${mib} MiB. Downscale it first.`, true);
      return;
    }
    uploadMessage(`reading ${file.name}…`, false);
    try {
      const analysis = await call("/api/upload", {
        method: "POST",
        headers: {
          "Content-Type": "application/octet-stream",
          "X-Filename": encodeURIComponent(file.name),
        },
        body: file,
      });
      show(analysis);
      uploadMessage(`${file.name}: ${analysis.note || "used as it is"}`, false);
    } catch (error) {
      uploadMessage(error.message, true);
    }
  });
})();
