// The atlas's interactions: the λ slider of each concept card, the class filter and the lightbox.
// Everything it shows is already in the page; it never loads anything.
(() => {
  "use strict";
  const cards = Array.from(document.querySelectorAll("article.concept-card"));

  // λ slider: each step shows one precomputed amplification (the strip's frames hold the images).
  for (const card of cards) {
    const slider = card.querySelector(".lambda-slider");
    const view = card.querySelector(".lambda-view");
    const caption = card.querySelector(".lambda-caption");
    const value = card.querySelector(".lambda-value");
    const frames = Array.from(card.querySelectorAll(".frame"));
    if (!slider || !view || frames.length === 0) continue;
    const show = (step) => {
      const frame = frames[step];
      const image = frame.querySelector("img");
      view.src = image.src;
      view.alt = image.alt;
      view.dataset.caption = frame.dataset.caption;
      caption.textContent = frame.dataset.caption;
      value.textContent = frame.dataset.lambda;
      frames.forEach((other, i) => {
        other.classList.toggle("active", i === step);
        other.setAttribute("aria-pressed", String(i === step));
      });
    };
    slider.addEventListener("input", () => show(Number(slider.value)));
    frames.forEach((frame, i) =>
      frame.addEventListener("click", () => {
        slider.value = String(i);
        show(i);
      }),
    );
  }

  // Class filter: a card stays when one of the classes it is relevant to contains the text, or
  // when the text is its concept number.
  const filter = document.getElementById("class-filter");
  const count = document.getElementById("filter-count");
  const none = document.getElementById("no-match");
  const relevant = new Map(
    cards.map((card) => [card, JSON.parse(card.dataset.classes).map((c) => c.toLowerCase())]),
  );
  const applyFilter = () => {
    const query = filter.value.trim().toLowerCase();
    const number = query.replace(/^concept\s*/, "");
    let shown = 0;
    for (const card of cards) {
      const match =
        query === "" ||
        number === card.dataset.concept ||
        relevant.get(card).some((name) => name.includes(query));
      card.hidden = !match;
      if (match) shown += 1;
    }
    count.textContent = `${shown} of ${cards.length} concepts`;
    if (none) none.hidden = shown > 0 || cards.length === 0;
  };
  if (filter) {
    filter.addEventListener("input", applyFilter);
    applyFilter();
  }

  // Lightbox: a click (or Enter) on any zoomable image shows it large; a click, Escape or the
  // close button hides it.
  let box = null;
  const close = () => {
    if (box) box.hidden = true;
  };
  const open = (image) => {
    if (!box) {
      box = document.createElement("div");
      box.id = "lightbox";
      box.setAttribute("role", "dialog");
      box.setAttribute("aria-modal", "true");
      box.setAttribute("aria-label", "enlarged image");
      const figure = document.createElement("figure");
      figure.append(document.createElement("img"), document.createElement("figcaption"));
      const button = document.createElement("button");
      button.type = "button";
      button.setAttribute("aria-label", "close");
      button.textContent = "×";
      box.append(figure, button);
      box.addEventListener("click", close);
      document.body.append(box);
    }
    const large = box.querySelector("img");
    large.src = image.src;
    large.alt = image.alt;
    box.querySelector("figcaption").textContent = image.dataset.caption || image.alt;
    box.hidden = false;
    box.querySelector("button").focus();
  };
  for (const image of document.querySelectorAll("img.zoom")) image.tabIndex = 0;
  document.addEventListener("click", (event) => {
    const image = event.target.closest("img.zoom");
    if (image) open(image);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
    else if (event.key === "Enter" && event.target.matches && event.target.matches("img.zoom")) {
      open(event.target);
    }
  });
})();
