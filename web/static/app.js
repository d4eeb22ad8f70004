/* MatteFlow page: single image (upload / drop / paste -> a one-item job -> before/after + download; option
   changes re-render it from the stored upload), batches (files or folders -> POST /api/v1/jobs -> poll
   status -> cards that open large, failures, ZIP) and the history of this browser's jobs (history.js).
   Plain JS, no build step; talks only to the JSON API documented at /api/v1/openapi.json. */
"use strict";

(function () {
  const I18N = window.MF_I18N;
  const HISTORY = window.MF_HISTORY;
  const t = I18N.t;
  const config = JSON.parse(document.getElementById("mf-config").textContent);
  const $ = (id) => document.getElementById(id);

  const IMAGE_EXTENSIONS = /\.(jpe?g|png|webp|bmp|tiff?|heic|heif|hif|avif)$/i;
  const POLL_INTERVAL_MS = 800;
  const POLL_MAX_ERRORS = 15; // consecutive failed polls before giving up
  const STALL_LIMIT_MS = 30 * 60 * 1000; // no item finished for this long: stop polling, say so
  const MEDIA_EXTENSIONS = { "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp" };
  // Browsers give pages an image clipboard only over HTTPS or on this machine: elsewhere Copy is not shown.
  const CAN_COPY_IMAGES = Boolean(window.isSecureContext && navigator.clipboard && window.ClipboardItem);
  // The server reads images by their web address when its operator allows it (MATTEFLOW_FETCH_HOSTS): then a
  // pasted or dropped address (an image dragged from another site's page) is cut out like a file.
  const IMAGE_URLS = Boolean(config.imageUrls);
  const RERENDER_DELAY_MS = 450; // options settle this long before a photo is re-rendered
  const SINGLE_TIMEOUT_MS = 10 * 60 * 1000;
  const DEFAULTS = {
    background: "transparent",
    format: "png",
    alpha_threshold: 0,
    erode: 0,
    feather: false,
    refine: false,
    shadow: false,
    crop: "none",
    crop_margin: 0,
    output_size: "none",
  };
  HISTORY.setTtlHours(config.resultTtlHours);

  /* ---------- language ---------- */

  function refreshLanguageButton() {
    $("lang-toggle").textContent = t("lang.other");
  }
  $("lang-toggle").addEventListener("click", () => {
    I18N.setLanguage(I18N.lang === "zh" ? "en" : "zh");
  });
  document.addEventListener("mf:language", () => {
    refreshLanguageButton();
    rerenderDynamicText();
  });

  /* ---------- tabs ---------- */

  const TABS = ["single", "batch", "history"];
  let activeTab = "single";
  function showTab(name) {
    activeTab = name;
    for (const tab of TABS) {
      const selected = tab === name;
      $("tab-" + tab).classList.toggle("active", selected);
      $("tab-" + tab).setAttribute("aria-selected", String(selected));
      $("tab-" + tab).tabIndex = selected ? 0 : -1;
      $("panel-" + tab).classList.toggle("hidden", !selected);
    }
    HISTORY.setCurrent("tab", name);
    if (name === "history") renderHistory();
  }
  for (const tab of TABS) $("tab-" + tab).addEventListener("click", () => showTab(tab));
  // Arrow keys move between tabs (the WAI-ARIA tabs pattern); Tab moves on into the panel.
  document.querySelector(".tabs").addEventListener("keydown", (e) => {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
    if (!step) return;
    const next = TABS[(TABS.indexOf(activeTab) + step + TABS.length) % TABS.length];
    showTab(next);
    $("tab-" + next).focus();
  });

  /* ---------- options ---------- */

  const form = $("options");
  function backgroundMode() {
    return form.querySelector("input[name=bg_mode]:checked").value;
  }
  function setBackground(value) {
    const transparent = !value || value === "transparent";
    form.querySelector(`input[name=bg_mode][value=${transparent ? "transparent" : "colour"}]`).checked = true;
    if (!transparent) $("opt-colour").value = value;
    updateOptionHints();
  }

  // The background photo ("Photo" mode): the file chosen in this page, sent with every request that makes a
  // job. Without one (a photo restored after a reload), a re-render asks the server to reuse the source
  // job's own background photo.
  let backdropFile = null;
  let backdropStored = false; // the restored job has its own background photo on the server
  function setBackdropMode(on) {
    if (on) $("opt-bg-image").checked = true;
    updateOptionHints();
  }
  $("opt-bg-image").addEventListener("change", () => {
    if (!backdropFile) $("opt-backdrop").click();
  });
  $("opt-backdrop-choose").addEventListener("click", () => $("opt-backdrop").click());
  $("opt-backdrop").addEventListener("change", (e) => {
    const file = e.target.files && e.target.files[0];
    if (!file) return;
    backdropFile = file;
    setBackdropMode(true); // the form's own change listener re-renders next
  });

  function applyPreset(name) {
    // A preset fills the panel; "None" puts the defaults back. Anything changed afterwards is sent
    // explicitly and wins on the server too.
    const preset = { ...DEFAULTS, ...(config.presets[name] || {}) };
    setBackground(preset.background);
    $("opt-format").value = preset.format;
    $("opt-threshold").value = preset.alpha_threshold ?? 0;
    $("opt-erode").value = preset.erode ?? 0;
    $("opt-feather").checked = Boolean(preset.feather);
    $("opt-refine").checked = Boolean(preset.refine);
    $("opt-shadow").checked = Boolean(preset.shadow);
    $("opt-model").value = preset.model || config.defaultModel;
    $("opt-crop").value = preset.crop;
    $("opt-crop-margin").value = preset.crop_margin;
    $("opt-output-size").value = preset.output_size === "none" ? "" : preset.output_size;
    updateOptionHints();
  }

  /** The panel as a job was made (its stored options), so a result never sits beside other options. */
  function setOptions(options) {
    if (!options) return;
    $("opt-preset").value = options.preset || "";
    setBackground(options.background);
    $("opt-format").value = options.format || "png";
    $("opt-threshold").value = options.alpha_threshold ?? 0;
    $("opt-erode").value = options.erode ?? 0;
    $("opt-feather").checked = Boolean(options.feather);
    $("opt-refine").checked = Boolean(options.refine);
    $("opt-shadow").checked = Boolean(options.shadow);
    $("opt-max-side").value = options.max_side || "";
    $("opt-mask").checked = Boolean(options.mask);
    $("opt-model").value = options.model || config.defaultModel;
    backdropStored = Boolean(options.background_image);
    if (backdropStored) setBackdropMode(true);
    $("opt-crop").value = options.crop || "none";
    $("opt-crop-margin").value = options.crop_margin ?? 0;
    $("opt-output-size").value = !options.output_size || options.output_size === "none" ? "" : options.output_size;
    updateOptionHints();
  }

  /** "ID photo · JPEG · #ffffff" */
  function summarizeOptions(options) {
    if (!options) return "";
    const parts = [];
    if (options.preset) parts.push(t("preset." + options.preset));
    parts.push((options.format || "png").toUpperCase());
    const bg = options.background || "transparent";
    if (options.background_image) parts.push(t("options.image"));
    else parts.push(bg === "transparent" ? t("options.summaryTransparent") : bg);
    if (options.crop && options.crop !== "none") parts.push(t("crop." + options.crop));
    if (options.mask) parts.push(t("single.downloadMask"));
    return parts.join(" · ");
  }

  function updateOptionHints() {
    $("opt-threshold-value").textContent = $("opt-threshold").value;
    const jpegTransparent = $("opt-format").value === "jpeg" && backgroundMode() === "transparent";
    $("opt-hint").textContent = jpegTransparent ? t("options.jpegNote") : "";
    // The preview sits over a checkerboard only when the result can be transparent.
    const opaque = backgroundMode() !== "transparent" || $("opt-format").value === "jpeg";
    const photo = backgroundMode() === "image";
    $("backdrop-choice").classList.toggle("hidden", !photo);
    $("opt-backdrop-name").textContent = backdropFile ? backdropFile.name : photo ? t("options.imageKept") : "";
    $("compare").classList.toggle("checker", !opaque);
    // The margin belongs to a crop: shown only with one.
    $("opt-crop-margin-field").classList.toggle("hidden", $("opt-crop").value === "none");
  }

  /** The option fields in the API's names; blanks are left out so the server's defaults apply. */
  function optionEntries() {
    // Options confirmed from words ("Say what you want", instruction.js) are sent as they were confirmed;
    // masks are for single photos too now, so the confirmed mask is always kept.
    const confirmed = window.MF_INSTRUCTION ? window.MF_INSTRUCTION.entries(true) : null;
    if (confirmed) return confirmed;
    const entries = [];
    const preset = $("opt-preset").value;
    if (preset) entries.push(["preset", preset]);
    entries.push(["model", $("opt-model").value]);
    entries.push(["background", backgroundMode() === "colour" ? $("opt-colour").value : "transparent"]);
    entries.push(["format", $("opt-format").value]);
    entries.push(["alpha_threshold", $("opt-threshold").value]);
    entries.push(["erode", $("opt-erode").value || "0"]);
    entries.push(["feather", $("opt-feather").checked ? "true" : "false"]);
    // Always sent, like feather: unticked under a preset that refines (avatar) must switch it off.
    entries.push(["refine", $("opt-refine").checked ? "true" : "false"]);
    entries.push(["shadow", $("opt-shadow").checked ? "true" : "false"]);
    const maxSide = $("opt-max-side").value.trim();
    if (maxSide) entries.push(["max_side", maxSide]);
    entries.push(["mask", $("opt-mask").checked ? "true" : "false"]);
    const crop = $("opt-crop").value;
    entries.push(["crop", crop]);
    if (crop !== "none") entries.push(["crop_margin", $("opt-crop-margin").value || "0"]);
    const outputSize = $("opt-output-size").value.trim();
    if (outputSize) entries.push(["output_size", outputSize]);
    if (backgroundMode() === "image") entries.push(["background_image", backdropFile || "true"]);
    return entries;
  }

  $("opt-preset").addEventListener("change", (e) => applyPreset(e.target.value));
  // Every change re-renders the photo on screen (debounced); the preset's own change lands here too.
  form.addEventListener("input", () => optionsChanged());
  form.addEventListener("change", () => optionsChanged());
  form.addEventListener("submit", (e) => e.preventDefault());
  $("opt-colour").addEventListener("input", () => {
    setBackground($("opt-colour").value);
    optionsChanged();
  });
  document.querySelectorAll(".swatch").forEach((swatch) => {
    swatch.style.background = swatch.dataset.colour;
    swatch.addEventListener("click", () => {
      setBackground(swatch.dataset.colour);
      optionsChanged();
    });
  });

  // Phones: the options fold into one line above the photos; on wide screens they stay open.
  const wideScreen = window.matchMedia("(min-width: 901px)");
  $("options-panel").open = wideScreen.matches;
  $("options-panel").querySelector("summary").addEventListener("click", (e) => {
    if (wideScreen.matches) e.preventDefault();
  });

  /* ---------- shared helpers ---------- */

  /* Errors are kept as {codes, params, message} and put into words when shown, so a language switch
     translates them too. The API sends a stable code (+ a finer reason and numbers); the English message
     is shown only for codes this page does not know. */
  function apiError(body, status) {
    if (!body || typeof body !== "object") return { codes: [], params: {}, message: `HTTP ${status}` };
    return {
      codes: [body.reason, body.error].filter(Boolean),
      params: { ...body, ...(body.params || {}) },
      message: body.message || `HTTP ${status}`,
    };
  }
  function itemError(item) {
    return { codes: [item.error_code].filter(Boolean), params: item.error_params || {}, message: item.error || "" };
  }
  const NETWORK_ERROR = { codes: [], params: {}, message: "", key: "error.network" };

  function errorText(error) {
    if (!error) return "";
    if (error.key) return t(error.key);
    const code = error.codes.find((c) => I18N.has("err." + c));
    if (!code) return error.message;
    const params = {};
    for (const [name, value] of Object.entries(error.params || {})) {
      params[name] = typeof value === "number" ? value.toLocaleString(I18N.lang === "zh" ? "zh-CN" : "en") : value;
    }
    return t("err." + code, params);
  }

  async function errorOf(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      // not JSON (a proxy's page): the status says it
    }
    return apiError(body, response.status);
  }

  /** POST a form and return the JSON answer; throws an error object (see apiError) on failure. */
  async function postForm(url, body) {
    let response;
    try {
      response = await fetch(url, { method: "POST", body });
    } catch (err) {
      throw NETWORK_ERROR;
    }
    if (!response.ok) throw await errorOf(response);
    return response.json();
  }

  async function getJob(url) {
    let response;
    try {
      response = await fetch(url, { cache: "no-store" });
    } catch (err) {
      throw NETWORK_ERROR;
    }
    if (!response.ok) throw await errorOf(response);
    return response.json();
  }

  async function fetchBlob(url) {
    let response;
    try {
      response = await fetch(url);
    } catch (err) {
      throw NETWORK_ERROR;
    }
    if (!response.ok) throw await errorOf(response);
    return response.blob();
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function itemUrl(jobId, index, query) {
    return `/api/v1/jobs/${encodeURIComponent(jobId)}/items/${index}${query ? "?" + query : ""}`;
  }

  function withQuery(url, query) {
    return url + (url.includes("?") ? "&" : "?") + query;
  }

  /** Label-based controls (drop zones, "Choose a folder") open their file picker with Enter or Space. */
  function openWithKeyboard(control, input) {
    control.addEventListener("keydown", (e) => {
      if (e.key !== "Enter" && e.key !== " ") return;
      e.preventDefault();
      input.click();
    });
  }

  function formatBytes(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  function stem(name) {
    const dot = name.lastIndexOf(".");
    return dot > 0 ? name.slice(0, dot) : name;
  }

  function isImageFile(file) {
    return (file.type && file.type.startsWith("image/")) || IMAGE_EXTENSIONS.test(file.name);
  }

  function setupDropzone(zone, onFiles) {
    ["dragenter", "dragover"].forEach((type) =>
      zone.addEventListener(type, (e) => {
        e.preventDefault();
        zone.classList.add("dragging");
      }),
    );
    ["dragleave", "dragend"].forEach((type) => zone.addEventListener(type, () => zone.classList.remove("dragging")));
    zone.addEventListener("drop", async (e) => {
      e.preventDefault();
      zone.classList.remove("dragging");
      onFiles(await filesFromDataTransfer(e.dataTransfer), e.dataTransfer);
    });
  }

  /** Every http(s) address a drop or paste carries (a link or an image dragged from a page, a copied address,
      a column of addresses copied from a spreadsheet), when the server reads images by address; else none. */
  function imageUrlsIn(dataTransfer) {
    if (!IMAGE_URLS || !dataTransfer) return [];
    const text = dataTransfer.getData("text/uri-list") || dataTransfer.getData("text/plain") || "";
    // uri-list comment lines start with "#"; cells of a copied spreadsheet row are tab-separated.
    const words = text.split(/\r?\n/).filter((line) => !line.trim().startsWith("#")).join(" ").split(/\s+/);
    return words.filter((word) => /^https?:\/\/\S+$/i.test(word));
  }

  function imageUrlIn(dataTransfer) {
    return imageUrlsIn(dataTransfer)[0] || null;
  }

  /** The file name an image address ends in ("image" when it has none): what the server names its result. */
  function urlName(url) {
    try {
      return decodeURIComponent(new URL(url).pathname.split("/").pop() || "") || "image";
    } catch (err) {
      return "image"; // not a parsable address or name: the server says what is wrong with it
    }
  }

  /** Files of a drop, walking dropped folders (Chrome/Firefox/Safari expose them as entries). */
  async function filesFromDataTransfer(dataTransfer) {
    const items = Array.from(dataTransfer.items || []);
    const entries = items.map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
    if (!entries.some((entry) => entry && entry.isDirectory)) return Array.from(dataTransfer.files || []);
    const files = [];
    for (const entry of entries) if (entry) await walkEntry(entry, files, true);
    return files;
  }

  async function walkEntry(entry, out, topLevel) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      // Inside folders keep images only (skip .DS_Store, sidecar files); a file dropped on its own always goes.
      if (topLevel || isImageFile(file)) out.push(file);
      return;
    }
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) break;
      for (const child of batch) await walkEntry(child, out, false);
    }
  }

  /* ---------- before / after frames (the single view and the large view) ---------- */

  function bindCompare(frame, range, before, line) {
    const set = (value) => {
      // "Before" covers the left part of the frame; the slider moves the seam.
      before.style.clipPath = `inset(0 ${100 - value}% 0 0)`;
      line.style.left = `${value}%`;
    };
    range.addEventListener("input", () => set(Number(range.value)));
    // Dragging on the picture moves the seam too (the range input stays the keyboard-accessible control).
    frame.addEventListener("pointermove", (e) => {
      if (!e.buttons) return;
      const box = frame.getBoundingClientRect();
      const value = Math.max(0, Math.min(100, Math.round((100 * (e.clientX - box.left)) / box.width)));
      range.value = value;
      set(value);
    });
    set(Number(range.value));
  }
  bindCompare($("compare"), $("compare-range"), $("before-img"), $("compare-line"));
  bindCompare($("viewer-compare"), $("viewer-range"), $("viewer-before"), $("viewer-line"));

  /**
   * A result framed differently from its photo (cropped to the subject, an ID photo) cannot lie under the photo
   * for a before/after seam: the frame then shows the result alone, and its slider goes.
   */
  function showFraming(frame, range, options) {
    const resized = options && options.output_size && options.output_size !== "none";
    const reframed = Boolean(options && ((options.crop && options.crop !== "none") || options.id_size || resized));
    frame.classList.toggle("reframed", reframed);
    range.classList.toggle("hidden", reframed);
  }

  /* ---------- single image ---------- */

  // One photo on screen. Its upload lives on the server as a one-item job (kind "single"); an option change
  // re-runs that job's stored upload into a new job, so nothing is uploaded twice.
  const single = {
    name: "",
    request: 0, // id of the latest action: an older answer arriving late is ignored
    sourceId: null, // the newest job holding the upload (what a re-render starts from)
    shownId: null, // the job whose result is on screen
    retired: new Set(), // superseded re-renders, deleted once something newer is shown
    timer: null,
    urls: { before: null, after: null, mask: null },
    afterBlob: null, // the result's bytes, for Copy
    warnings: [], // the shown result's warnings: [{text, code, params}]
    status: { key: "", vars: null, error: null },
  };
  let singleCheck = null; // {confidence, model} of the shown result when it is worth a second look

  function setSingleStatus(key, vars, error) {
    single.status = { key, vars, error: error || null };
    renderSingleStatus();
  }
  /** An item's warnings: [{text, code, params}] (the English sentence, and its code where the server gave one). */
  function itemWarnings(item) {
    const codes = item.warning_codes || [];
    return (item.warnings || []).map((text, i) => ({ text, ...(codes[i] || {}) }));
  }

  /** What a card or the large view says under an item: a failed item's reason, or what a done one could not do
      as asked (no shadow, no face found...; shown in amber: advice, not a failure). */
  function itemNote(item) {
    return item.state === "failed" ? errorText(itemError(item)) : itemWarnings(item).map(warningText).join(" · ");
  }

  /** One of an item's warnings in the page's language: by its code where the server gave one, else as sent. */
  function warningText({ text, code, params }) {
    return code && I18N.has(`warn.${code}`) ? t(`warn.${code}`, params) : text;
  }

  function renderSingleStatus() {
    const el = $("single-status");
    const { key, vars, error } = single.status;
    if (error) el.textContent = `${t("error.prefix")}: ${errorText(error)}`;
    else el.textContent = key ? t(key, vars) : "";
    if (!error && key && singleCheck) el.textContent += " · " + t("result.check");
    // What the engine could not do as asked (no shadow, no face found...), in the page's language.
    if (!error && key) for (const warning of single.warnings) el.textContent += " · " + warningText(warning);
    el.classList.toggle("error", Boolean(error));
    el.classList.toggle("warn", !error && Boolean(singleCheck));
    $("single-result").dataset.check = singleCheck ? "true" : "false";
    renderTryModel(error ? null : singleCheck);
  }

  /** The other network for a result its model was unsure of: the general (objects) model after the people
   * model or their combination, the people model after the general one. None while options confirmed from
   * words are in force (they name their own model). */
  function otherModel(check) {
    if (!check || !check.model) return null;
    if (window.MF_INSTRUCTION && window.MF_INSTRUCTION.entries(false)) return null;
    return otherModelOf(check.model);
  }
  function otherModelOf(model) {
    return model === "general" ? "people" : "general";
  }

  function renderTryModel(check) {
    const button = $("single-try-model");
    const other = otherModel(check);
    button.classList.toggle("hidden", !other);
    button.dataset.model = other || "";
    button.textContent = other ? t("result.tryModel", { model: t(`model.${other}`) }) : "";
  }

  // One click re-renders the photo on screen with the other model: the model select changes as if by hand.
  $("single-try-model").addEventListener("click", (e) => {
    const other = e.currentTarget.dataset.model;
    if (!other) return;
    $("opt-model").value = other;
    optionsChanged();
  });

  /** A result below the confidence limit is marked "check this one" (the score comes from the server). */
  function needsCheck(confidence) {
    return typeof confidence === "number" && confidence < config.checkBelow;
  }

  function replaceUrl(which, url) {
    if (single.urls[which] && single.urls[which].startsWith("blob:")) URL.revokeObjectURL(single.urls[which]);
    single.urls[which] = url;
  }

  function setBefore(url) {
    replaceUrl("before", url);
    $("before-missing").classList.add("hidden");
    if (url) $("before-img").src = url;
    else $("before-img").removeAttribute("src");
  }
  // A file the browser cannot show (not an image at all) gets a sentence, never a broken-image icon.
  $("before-img").addEventListener("error", () => {
    if (!$("before-img").getAttribute("src")) return;
    $("before-img").removeAttribute("src");
    $("before-missing").classList.remove("hidden");
  });

  function clearAfter() {
    replaceUrl("after", null);
    replaceUrl("mask", null);
    $("after-img").removeAttribute("src"); // never show the previous photo's result under a new one
    const link = $("single-download");
    link.classList.add("disabled");
    link.setAttribute("aria-disabled", "true");
    link.removeAttribute("href");
    $("single-mask").classList.add("hidden");
    $("single-copy").classList.add("hidden");
    single.afterBlob = null;
  }

  function singleBusy(key, keepResult) {
    $("single-drop").classList.add("compact");
    $("single-result").classList.remove("hidden");
    $("single-result").dataset.state = keepResult ? "stale" : "running";
    $("single-spinner").classList.remove("hidden");
    const link = $("single-download");
    link.classList.add("disabled");
    link.setAttribute("aria-disabled", "true");
    $("single-mask").classList.add("hidden");
    $("single-copy").classList.add("hidden");
    singleCheck = null;
    single.warnings = [];
    setSingleStatus(key);
  }

  function finishSingle(state) {
    $("single-spinner").classList.add("hidden");
    $("single-result").dataset.state = state;
  }

  function failSingle(error) {
    finishSingle("failed");
    clearAfter();
    setSingleStatus("", null, error);
  }

  /** Poll a job until it ends; null when ``alive()`` turns false (the user moved on). */
  async function waitForJob(jobId, alive) {
    const deadline = Date.now() + SINGLE_TIMEOUT_MS;
    let delay = 250;
    let errors = 0;
    for (;;) {
      let status = null;
      try {
        status = await getJob(`/api/v1/jobs/${encodeURIComponent(jobId)}`);
        errors = 0;
      } catch (err) {
        if (err !== NETWORK_ERROR || ++errors >= POLL_MAX_ERRORS) throw err;
      }
      if (!alive()) return null;
      if (status && (status.state === "done" || status.state === "failed")) return status;
      if (Date.now() > deadline) throw { codes: ["timeout"], params: {}, message: "timeout" };
      await sleep(delay);
      delay = Math.min(1000, delay * 1.5);
    }
  }

  async function processSingle(file) {
    if (!file) return;
    // Sent whatever its type: the server checks the bytes and its reason explains a refusal.
    const body = new FormData();
    const name = file.name || "pasted.png";
    body.append("files", file, name);
    await startSingle(body, name, URL.createObjectURL(file), "single.processing");
  }

  /** An image by its web address: the server reads it (the "before" is what it read, once done). */
  async function processUrl(url) {
    const body = new FormData();
    body.append("image_url", url);
    await startSingle(body, urlName(url), null, "single.fetching");
  }

  async function startSingle(body, name, beforeUrl, busyKey) {
    const request = ++single.request;
    clearTimeout(single.timer);
    leavePhoto();
    single.name = name;
    setBefore(beforeUrl);
    clearAfter();
    singleBusy(busyKey);
    body.append("kind", "single");
    for (const [option, value] of optionEntries()) body.append(option, value);
    let created;
    try {
      created = await postForm("/api/v1/jobs", body);
    } catch (err) {
      if (request === single.request) failSingle(err);
      return;
    }
    HISTORY.add({ id: created.id, kind: "single", names: [single.name], total: 1, created: Date.now() });
    refreshHistoryCount();
    if (request !== single.request) return;
    single.sourceId = created.id;
    HISTORY.setCurrent("single", created.id);
    await showSingleJob(created.id, request, { showInput: !beforeUrl });
  }

  /** Wait for a one-item job and show its result (or its reason). ``how.applyOptions`` sets the panel to
      the job's options (a job opened from the history); ``how.quiet`` says nothing if it expired. */
  async function showSingleJob(jobId, request, how) {
    const started = performance.now();
    const alive = () => request === single.request;
    let status;
    try {
      status = await waitForJob(jobId, alive);
    } catch (err) {
      if (!alive()) return;
      if (how.quiet) resetSingle();
      else failSingle(err);
      return;
    }
    if (!status) return;
    const item = status.items[0];
    if (how.applyOptions) {
      single.name = (item && item.name) || "image";
      setOptions(status.options);
      setBefore(itemUrl(jobId, 0, "input=1"));
    }
    showFraming($("compare"), $("compare-range"), status.options);
    if (!item || item.state !== "done") {
      single.sourceId = null; // nothing to re-render from a photo that failed
      failSingle(item ? itemError(item) : { codes: ["matting_error"], params: {}, message: status.error || "" });
      return;
    }
    if (how.showInput) setBefore(itemUrl(jobId, 0, "input=1")); // an image by address: what the server read
    let blob;
    let maskBlob = null;
    try {
      blob = await fetchBlob(item.result_url);
      if (item.mask_url) maskBlob = await fetchBlob(item.mask_url);
    } catch (err) {
      if (alive()) failSingle(err);
      return;
    }
    if (!alive()) return;
    replaceUrl("after", URL.createObjectURL(blob));
    const after = $("after-img");
    after.src = single.urls.after;
    await after.decode().catch(() => undefined);
    if (!alive()) return;
    const extension = MEDIA_EXTENSIONS[blob.type] || "png";
    const link = $("single-download");
    link.href = single.urls.after;
    link.download = `${stem(single.name)}_matte.${extension}`;
    link.classList.remove("disabled");
    link.removeAttribute("aria-disabled");
    single.afterBlob = blob;
    $("single-copy").classList.toggle("hidden", !CAN_COPY_IMAGES);
    const maskLink = $("single-mask");
    replaceUrl("mask", maskBlob ? URL.createObjectURL(maskBlob) : null);
    maskLink.classList.toggle("hidden", !maskBlob);
    if (maskBlob) {
      maskLink.href = single.urls.mask;
      maskLink.download = `${stem(single.name)}_mask.png`;
    }
    singleCheck = needsCheck(item.confidence) ? { confidence: item.confidence, model: item.model } : null;
    single.warnings = itemWarnings(item);
    finishSingle("done");
    setSingleStatus("single.done", {
      seconds: ((performance.now() - started) / 1000).toFixed(1),
      width: after.naturalWidth,
      height: after.naturalHeight,
    });
    const previous = single.shownId;
    single.shownId = jobId;
    single.sourceId = single.sourceId || jobId;
    if (previous && previous !== jobId) {
      single.retired.add(previous);
      HISTORY.replace(previous, jobId);
      refreshHistoryCount();
    }
    HISTORY.setCurrent("single", jobId);
    deleteRetired();
  }

  /** The photo leaves the screen: a re-render made but never shown goes; the shown job stays (history). */
  function leavePhoto() {
    if (single.sourceId && single.sourceId !== single.shownId) single.retired.add(single.sourceId);
    single.sourceId = single.shownId = null;
    deleteRetired();
  }

  function deleteRetired() {
    for (const id of single.retired) {
      if (id === single.sourceId || id === single.shownId) continue;
      single.retired.delete(id);
      fetch(`/api/v1/jobs/${encodeURIComponent(id)}`, { method: "DELETE" }).catch(() => undefined);
    }
  }

  /** Any option changed: the photo on screen is out of date now, and is re-rendered once changes settle. */
  function optionsChanged() {
    updateOptionHints();
    // A size typed half-way ("1000x") waits for the rest rather than asking the server for an error.
    if (!single.sourceId || !$("opt-output-size").checkValidity()) return;
    // "Photo" picked but no photo chosen yet: wait for the file rather than ask for a background not there.
    if (backgroundMode() === "image" && !backdropFile && !backdropStored) return;
    clearTimeout(single.timer);
    singleBusy("single.stale", true);
    single.request++; // a result of the old options arriving now must not be shown as current
    single.timer = setTimeout(rerenderSingle, RERENDER_DELAY_MS);
  }

  async function rerenderSingle() {
    const source = single.sourceId;
    if (!source) return;
    const request = ++single.request;
    singleBusy("single.updating", true);
    const body = new FormData();
    for (const [name, value] of optionEntries()) body.append(name, value);
    let created;
    try {
      created = await postForm(`/api/v1/jobs/${encodeURIComponent(source)}/rerun`, body);
    } catch (err) {
      if (request === single.request) failSingle(err);
      return;
    }
    if (single.sourceId === source) {
      // The new job holds the upload now; the old one goes once it is no longer on screen.
      single.retired.add(source);
      single.sourceId = created.id;
    } else {
      single.retired.add(created.id);
    }
    if (request !== single.request) return;
    await showSingleJob(created.id, request, {});
  }

  function resetSingle() {
    single.request++;
    clearTimeout(single.timer);
    leavePhoto();
    setBefore(null);
    clearAfter();
    singleCheck = null;
    single.warnings = [];
    $("single-result").classList.add("hidden");
    $("single-drop").classList.remove("compact");
    $("single-input").value = "";
    HISTORY.setCurrent("single", null);
    setSingleStatus("");
  }

  /** A photo from the history (or the one on screen before a reload), with the options it was made with. */
  function openSingleJob(jobId, quiet) {
    const request = ++single.request;
    clearTimeout(single.timer);
    leavePhoto();
    clearAfter();
    singleBusy("history.loading");
    return showSingleJob(jobId, request, { applyOptions: true, quiet });
  }

  $("single-input").addEventListener("change", (e) => processSingle(e.target.files[0]));
  $("single-reset").addEventListener("click", resetSingle);
  $("single-download").addEventListener("click", (e) => {
    if (e.currentTarget.classList.contains("disabled")) e.preventDefault();
  });

  // Copy the cut-out to the clipboard, to paste into a slide, a document or a chat. Clipboards take PNG only,
  // so a JPEG or WebP result is redrawn as PNG first.
  async function asPng(blob) {
    if (blob.type === "image/png") return blob;
    const bitmap = await createImageBitmap(blob);
    const canvas = document.createElement("canvas");
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
    bitmap.close();
    return new Promise((resolve, reject) =>
      canvas.toBlob((png) => (png ? resolve(png) : reject(new Error("no PNG"))), "image/png"),
    );
  }
  $("single-copy").addEventListener("click", async () => {
    if (!single.afterBlob) return;
    try {
      // The item is given a promise so the click's permission holds while a JPEG is redrawn.
      await navigator.clipboard.write([new ClipboardItem({ "image/png": asPng(single.afterBlob) })]);
      setSingleStatus("single.copied");
    } catch (err) {
      setSingleStatus("single.copyFailed");
    }
  });
  openWithKeyboard($("single-drop"), $("single-input"));
  setupDropzone($("single-drop"), (files, dataTransfer) => {
    if (files.length > 1) {
      // Several photos dropped on the single view: they are a batch.
      showTab("batch");
      addBatchFiles(files);
    } else if (files.length === 1) {
      processSingle(files[0]);
    } else {
      const url = imageUrlIn(dataTransfer);
      if (url) processUrl(url);
    }
  });

  // Paste from the clipboard anywhere on the page (screenshots, images copied from a browser).
  document.addEventListener("paste", (e) => {
    const target = e.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA")) return;
    const files = Array.from(e.clipboardData ? e.clipboardData.files : []).filter(isImageFile);
    const urls = files.length ? [] : imageUrlsIn(e.clipboardData);
    if (urls.length && activeTab === "batch") {
      // A list of addresses pasted into a batch: each becomes an item, read by the workers.
      e.preventDefault();
      addBatchUrls(urls);
      return;
    }
    const url = urls[0];
    if (url) {
      e.preventDefault();
      showTab("single");
      processUrl(url);
      return;
    }
    if (!files.length) return;
    e.preventDefault();
    if (activeTab === "batch") addBatchFiles(files);
    else {
      showTab("single");
      processSingle(files[0]);
    }
  });

  /* ---------- batch ---------- */

  let batchFiles = [];
  let batchUrls = []; // image addresses of the batch (the workers read them)
  let batchNotice = "";
  let job = null; // the last status JSON
  let jobPhase = { key: "", vars: null, error: null };
  let pollTimer = null;
  let pollingId = null;

  function addBatchFiles(files, fromFolder) {
    const accepted = fromFolder ? files.filter(isImageFile) : files;
    batchFiles = batchFiles.concat(accepted);
    batchNotice = "";
    if (batchFiles.length + batchUrls.length > config.maxFiles) {
      batchFiles = batchFiles.slice(0, Math.max(0, config.maxFiles - batchUrls.length));
      batchNotice = "batch.tooMany";
    }
    renderSelection();
  }

  function addBatchUrls(urls) {
    const known = new Set(batchUrls);
    batchUrls = batchUrls.concat(urls.filter((url) => !known.has(url) && known.add(url)));
    batchNotice = "";
    if (batchFiles.length + batchUrls.length > config.maxFiles) {
      batchUrls = batchUrls.slice(0, Math.max(0, config.maxFiles - batchFiles.length));
      batchNotice = "batch.tooMany";
    }
    renderSelection();
  }

  /* One request carries at most the server's upload limit (413 beyond it); a bigger batch goes as one job in
     several requests (open=true, then .../files, then .../close): one job, one ZIP. The margin leaves room
     for the multipart headers of every file and the option fields. */
  const PART_BYTES = Math.max(1, Math.floor(config.maxUploadMb * 1024 * 1024 * 0.95) - 65536);

  /** The batch's files in request-sized parts, in order (a file over PART_BYTES cannot be sent at all). */
  function batchParts() {
    const parts = [[]];
    let size = 0;
    for (const file of batchFiles) {
      if (parts[parts.length - 1].length && size + file.size > PART_BYTES) {
        parts.push([]);
        size = 0;
      }
      parts[parts.length - 1].push(file);
      size += file.size;
    }
    return parts;
  }

  function renderSelection() {
    const total = batchFiles.reduce((sum, file) => sum + file.size, 0);
    // A file the server would refuse (413) whatever the batch: say so before a long upload rather than after.
    const oversized = batchFiles.find((file) => file.size > PART_BYTES);
    const tooBig = Boolean(oversized);
    const parts = [];
    if (batchFiles.length) parts.push(t("batch.selection", { count: batchFiles.length, size: formatBytes(total) }));
    if (batchUrls.length) parts.push(t("batch.addresses", { count: batchUrls.length }));
    let text = parts.length ? parts.join(" · ") : t("batch.none");
    if (batchNotice) text += " — " + t(batchNotice, { max: config.maxFiles });
    if (tooBig) text += " — " + t("batch.tooBig", { name: oversized.name, mb: config.maxUploadMb });
    $("batch-selection").textContent = text;
    $("batch-selection").classList.toggle("error", tooBig);
    $("batch-start").disabled = batchFiles.length + batchUrls.length === 0 || tooBig;
  }

  function clearBatch() {
    stopPolling();
    batchFiles = [];
    batchUrls = [];
    batchNotice = "";
    job = null;
    $("batch-input").value = "";
    $("batch-folder").value = "";
    $("batch-job").classList.add("hidden");
    $("batch-grid").replaceChildren();
    HISTORY.setCurrent("batch", null);
    renderSelection();
  }

  function setJobPhase(key, vars, error) {
    jobPhase = { key, vars, error: error || null };
    renderJobPhase();
  }
  function renderJobPhase() {
    const el = $("batch-status");
    const { key, vars, error } = jobPhase;
    el.textContent = error ? `${t("error.prefix")}: ${errorText(error)}` : key ? t(key, vars) : "";
    el.classList.toggle("error", Boolean(error));
  }

  function upload(url, body, onProgress, idempotencyKey) {
    // XMLHttpRequest, not fetch: it reports upload progress, which matters for a few hundred MB of photos.
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("Idempotency-Key", idempotencyKey);
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) onProgress(Math.round((100 * e.loaded) / e.total));
      });
      xhr.addEventListener("load", () => resolve({ status: xhr.status, body: xhr.response }));
      xhr.addEventListener("error", () => reject(NETWORK_ERROR));
      xhr.send(body);
    });
  }

  function showJobPanel() {
    $("batch-job").classList.remove("hidden");
    $("batch-grid").replaceChildren();
    $("batch-zip").classList.add("hidden");
    setProgress(0);
  }

  /** The Idempotency-Key of a batch upload: a new one per batch, but the same one when the same batch is sent
      again after its upload broke off, so a job the server created before the connection died comes back
      instead of running every photo twice. */
  let batchKey = null;
  function batchKeyFor(entries) {
    const what = JSON.stringify([
      batchFiles.map((file) => [file.name, file.size, file.lastModified]),
      batchUrls,
      entries,
    ]);
    if (!batchKey || batchKey.what !== what) batchKey = { what, key: newKey() };
    return batchKey.key;
  }
  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID(); // HTTPS and localhost only
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function startBatch() {
    const total = batchFiles.length + batchUrls.length;
    if (!total) return;
    stopPolling();
    const parts = batchParts();
    const entries = optionEntries();
    // One key per request: the same batch sent again after a break gets back each request the server already
    // took (the job it made, the parts it added) and sends only the rest.
    const key = batchKeyFor(entries);
    const keyOf = (n) => (parts.length > 1 ? `${key}.${n}` : key);
    const sizes = parts.map((part) => part.reduce((sum, file) => sum + file.size, 0));
    const allBytes = Math.max(1, sizes.reduce((a, b) => a + b, 0));
    let sentBytes = 0;
    const onProgress = (n) => (percent) =>
      setJobPhase("batch.uploading", { percent: Math.round((100 * (sentBytes + (sizes[n] * percent) / 100)) / allBytes) });
    const fail = (error) => {
      $("batch-start").disabled = false;
      $("batch-job").dataset.state = "failed";
      setJobPhase("", null, error);
    };
    $("batch-start").disabled = true;
    showJobPanel();
    $("batch-job").dataset.state = "uploading";
    setJobPhase("batch.uploading", { percent: 0 });
    const first = new FormData();
    for (const file of parts[0]) first.append("files", file, file.name);
    for (const url of batchUrls) first.append("image_url", url);
    for (const [name, value] of entries) first.append(name, value);
    if (parts.length > 1) first.append("open", "true");
    let created;
    try {
      const answer = await upload("/api/v1/jobs", first, onProgress(0), keyOf(0));
      if (answer.status !== 202 || !answer.body || !answer.body.status_url) return fail(apiError(answer.body, answer.status));
      created = answer.body;
      const names = batchFiles.map((file) => file.name).concat(batchUrls.slice(0, 3).map(urlName)).slice(0, 3);
      HISTORY.add({ id: created.id, kind: "batch", names, total, created: Date.now() });
      HISTORY.setCurrent("batch", created.id);
      refreshHistoryCount();
      for (let n = 1; n < parts.length; n++) {
        sentBytes += sizes[n - 1];
        const body = new FormData();
        for (const file of parts[n]) body.append("files", file, file.name);
        const added = await upload(created.files_url, body, onProgress(n), keyOf(n));
        if (added.status !== 202) return fail(apiError(added.body, added.status));
      }
      if (parts.length > 1) {
        const closed = await fetch(created.close_url, { method: "POST" });
        if (!closed.ok) return fail(apiError(await closed.json().catch(() => null), closed.status));
      }
    } catch (err) {
      return fail(err === NETWORK_ERROR ? err : NETWORK_ERROR);
    }
    $("batch-start").disabled = false;
    batchKey = null; // sent: the next batch is a new one, even with the same photos
    pollJob(created.status_url, { id: created.id, errors: 0, lastProgress: Date.now(), finished: -1 });
  }

  /** A batch from the history (or the one on screen before a reload): its cards, progress and ZIP. */
  function openBatchJob(jobId, quiet) {
    stopPolling();
    showJobPanel();
    $("batch-job").dataset.state = "loading";
    setJobPhase("history.loading");
    HISTORY.setCurrent("batch", jobId);
    const statusUrl = `/api/v1/jobs/${encodeURIComponent(jobId)}`;
    pollJob(statusUrl, { id: jobId, errors: 0, lastProgress: Date.now(), finished: -1, quiet });
  }

  function stopPolling() {
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = null;
    pollingId = null;
  }

  async function pollJob(statusUrl, tracker) {
    pollingId = tracker.id;
    let status;
    try {
      status = await getJob(statusUrl);
      tracker.errors = 0;
    } catch (err) {
      if (pollingId !== tracker.id) return;
      if (err !== NETWORK_ERROR) {
        // The job is gone (expired or deleted): say so in words, or quietly forget it after a reload.
        if (tracker.quiet) clearBatch();
        else {
          $("batch-job").dataset.state = "failed";
          setJobPhase("", null, err);
        }
        return;
      }
      tracker.errors += 1;
      if (tracker.errors >= POLL_MAX_ERRORS) {
        setJobPhase("batch.lost", { message: t("error.network") }, null);
        return;
      }
      pollTimer = setTimeout(() => pollJob(statusUrl, tracker), POLL_INTERVAL_MS * 2);
      return;
    }
    if (pollingId !== tracker.id) return;
    job = status;
    renderJob();
    if (status.state === "done" || status.state === "failed") return;
    const finished = status.done + status.failed;
    if (finished !== tracker.finished) {
      tracker.finished = finished;
      tracker.lastProgress = Date.now();
    } else if (Date.now() - tracker.lastProgress > STALL_LIMIT_MS) {
      setJobPhase("batch.stalled", { minutes: Math.round(STALL_LIMIT_MS / 60000) });
      return;
    }
    // Big batches send big status documents: poll them less often (0.8 s up to 5 s).
    const interval = Math.min(5000, Math.max(POLL_INTERVAL_MS, status.total * 2));
    pollTimer = setTimeout(() => pollJob(statusUrl, tracker), interval);
  }

  function setProgress(fraction) {
    $("batch-progress").style.width = `${Math.round(fraction * 100)}%`;
  }

  function renderJob() {
    if (!job) return;
    const grid = $("batch-grid");
    const template = $("item-template");
    while (grid.children.length < job.items.length) {
      grid.appendChild(template.content.firstElementChild.cloneNode(true));
    }
    job.items.forEach((item, i) => renderItem(grid.children[i], item));
    const finished = job.done + job.failed;
    setProgress(job.total ? finished / job.total : 1);
    $("batch-job").dataset.state = job.state;
    if (job.state === "done") {
      setJobPhase("batch.finished", { done: job.done, failed: job.failed });
      const zip = $("batch-zip");
      zip.href = job.results_url;
      zip.classList.remove("hidden");
    } else if (job.state === "failed") {
      setJobPhase("batch.jobFailed");
    } else {
      setJobPhase("batch.counts", { done: job.done, failed: job.failed, total: job.total });
    }
  }

  function renderItem(card, item) {
    card.dataset.state = item.state;
    card.dataset.index = item.index;
    const open = card.querySelector(".item-open");
    open.title = item.name; // the full name on hover; the card cuts long ones
    open.setAttribute("aria-label", t("batch.open", { name: item.name }));
    open.onclick = () => openViewer(job.id, item, open, job.options);
    card.querySelector(".item-name").textContent = item.name;
    card.querySelector(".badge").textContent = t("state." + item.state);
    const reason = itemNote(item);
    card.querySelector(".reason").textContent = reason;
    card.querySelector(".reason").title = reason;
    const check = item.state === "done" && needsCheck(item.confidence);
    card.dataset.check = check ? "true" : "false";
    const note = card.querySelector(".check-note");
    note.classList.toggle("hidden", !check);
    note.textContent = t("result.check");
    note.title = check ? t("result.checkWhy", { confidence: item.confidence.toFixed(2) }) : "";
    const img = card.querySelector("img");
    if (item.state === "done" && item.result_url && img.getAttribute("src") !== item.result_url) {
      img.src = item.result_url;
    }
  }

  $("batch-input").addEventListener("change", (e) => addBatchFiles(Array.from(e.target.files), false));
  $("batch-folder").addEventListener("change", (e) => addBatchFiles(Array.from(e.target.files), true));
  $("batch-start").addEventListener("click", startBatch);
  $("batch-clear").addEventListener("click", clearBatch);
  openWithKeyboard($("batch-drop"), $("batch-input"));
  openWithKeyboard($("batch-folder-button"), $("batch-folder"));
  setupDropzone($("batch-drop"), (files, dataTransfer) => {
    if (files.length) addBatchFiles(files, false);
    else addBatchUrls(imageUrlsIn(dataTransfer)); // links dragged from another page
  });

  /* ---------- one result, large ---------- */

  let viewerItem = null;
  let viewerOpener = null;

  function openViewer(jobId, item, opener, options) {
    viewerItem = { jobId, item, options, retry: null };
    showFraming($("viewer-compare"), $("viewer-range"), options);
    viewerOpener = opener;
    renderViewer();
    const before = $("viewer-before");
    before.classList.remove("hidden");
    before.src = itemUrl(jobId, item.index, "input=1");
    const after = $("viewer-after");
    if (item.result_url) after.src = item.result_url;
    else after.removeAttribute("src");
    $("viewer-range").value = 50;
    $("viewer-range").dispatchEvent(new Event("input"));
    const download = $("viewer-download");
    download.classList.toggle("hidden", !item.result_url);
    if (item.result_url) download.href = withQuery(item.result_url, "download=1");
    const mask = $("viewer-mask");
    mask.classList.toggle("hidden", !item.mask_url);
    if (item.mask_url) mask.href = withQuery(item.mask_url, "download=1");
    $("viewer").showModal();
  }

  function renderViewer() {
    if (!viewerItem) return;
    const { item, retry } = viewerItem;
    $("viewer-name").textContent = item.name;
    $("viewer-badge").textContent = t("state." + item.state);
    $("viewer").dataset.state = item.state;
    $("viewer-reason").textContent = itemNote(item);
    // A doubtful result offers the other network for this one photo (a re-run of this item alone).
    const other = item.state === "done" && needsCheck(item.confidence) && !retry ? otherModelOf(item.model) : null;
    const button = $("viewer-try-model");
    button.classList.toggle("hidden", !other);
    button.dataset.model = other || "";
    button.textContent = other ? t("result.tryModel", { model: t(`model.${other}`) }) : "";
    let note = "";
    const model = retry ? { model: t(`model.${retry.model}`) } : null;
    if (retry && retry.error) note = `${t("error.prefix")}: ${errorText(retry.error)}`;
    else if (retry && retry.adopted) note = t("viewer.adopted", model);
    else if (retry && retry.adopting) note = t("viewer.adopting");
    else if (retry && retry.done) note = t("viewer.otherModel", model);
    else if (retry) note = t("viewer.running", model);
    $("viewer-note").textContent = note;
    // The re-run's result can replace the first one in the batch (its ZIP is written again on the server).
    $("viewer-adopt").classList.toggle("hidden", !(retry && retry.done && !retry.adopting && !retry.adopted));
  }

  $("viewer-adopt").addEventListener("click", async () => {
    const shown = viewerItem;
    if (!shown || !shown.retry || !shown.retry.jobId) return;
    shown.retry.adopting = true;
    renderViewer();
    const body = new FormData();
    body.append("from_job", shown.retry.jobId);
    const url = `/api/v1/jobs/${encodeURIComponent(shown.jobId)}/items/${shown.item.index}/adopt`;
    try {
      const answer = await postForm(url, body);
      shown.retry.adopted = true;
      // The batch's card shows the new result, its model and confidence (same URL, new file: a version
      // query asks past the browser's cache).
      const item = shown.item;
      const version = `v=${Date.now()}`;
      const fresh = (link) => link && withQuery(link.replace(/[?&]v=\d+$/, ""), version);
      Object.assign(item, { model: answer.model, confidence: answer.confidence });
      Object.assign(item, { result_url: fresh(item.result_url), mask_url: fresh(item.mask_url) });
      if (job && job.id === shown.jobId) renderJob();
    } catch (err) {
      shown.retry.error = err;
    }
    shown.retry.adopting = false;
    renderViewer();
  });

  /** Run this one item again with the other model and the batch's own options; show and offer the result. */
  $("viewer-try-model").addEventListener("click", async (e) => {
    const shown = viewerItem;
    const model = e.currentTarget.dataset.model;
    if (!shown || !model) return;
    shown.retry = { model, done: false, error: null };
    renderViewer();
    const body = new FormData();
    for (const [name, value] of Object.entries(shown.options || {})) {
      if (value !== null && value !== undefined && name !== "model") body.append(name, String(value));
    }
    body.append("model", model);
    body.append("items", String(shown.item.index));
    const alive = () => viewerItem === shown;
    try {
      const created = await postForm(`/api/v1/jobs/${encodeURIComponent(shown.jobId)}/rerun`, body);
      HISTORY.add({ id: created.id, kind: "batch", names: [shown.item.name], total: 1, created: Date.now() });
      refreshHistoryCount();
      const status = await waitForJob(created.id, alive);
      if (!status) return;
      const redone = status.items[0];
      if (!redone || redone.state !== "done") throw redone ? itemError(redone) : { codes: ["matting_error"], params: {} };
      shown.retry.jobId = created.id;
      $("viewer-after").src = redone.result_url;
      $("viewer-download").href = withQuery(redone.result_url, "download=1");
      shown.retry.done = true;
    } catch (err) {
      if (!alive()) return;
      shown.retry.error = err;
    }
    renderViewer();
  });

  $("viewer-before").addEventListener("error", () => $("viewer-before").classList.add("hidden"));
  $("viewer-close").addEventListener("click", () => $("viewer").close());
  $("viewer").addEventListener("click", (e) => {
    if (e.target === $("viewer")) $("viewer").close(); // a click on the backdrop
  });
  $("viewer").addEventListener("close", () => {
    viewerItem = null;
    if (viewerOpener && document.contains(viewerOpener)) viewerOpener.focus();
  });

  /* ---------- history ---------- */

  let historyStatuses = null; // the last answer of GET /api/v1/jobs?ids=..., for re-rendering in a new language
  let historyRequest = 0;

  function refreshHistoryCount() {
    const count = HISTORY.list().length;
    $("history-count").textContent = count ? String(count) : "";
    if (activeTab === "history") renderHistory();
  }

  async function renderHistory() {
    const request = ++historyRequest;
    const entries = HISTORY.list();
    try {
      const statuses = await HISTORY.fetchStatuses(entries.map((entry) => entry.id));
      if (request !== historyRequest) return;
      historyStatuses = statuses;
    } catch (err) {
      if (request !== historyRequest) return;
      historyStatuses = null; // offline: list what this browser knows, without states
    }
    drawHistory(entries);
    // Unfinished jobs: look again shortly.
    const running = historyStatuses && [...historyStatuses.byId.values()].some((j) => !["done", "failed"].includes(j.state));
    if (running && activeTab === "history") setTimeout(() => request === historyRequest && renderHistory(), 1500);
  }

  function drawHistory(entries) {
    const days = Math.round((config.resultTtlHours / 24) * 10) / 10;
    $("history-note").textContent = t("history.note", { days });
    $("history-empty").classList.toggle("hidden", entries.length > 0);
    $("history-count").textContent = entries.length ? String(entries.length) : "";
    const template = $("history-template");
    const cards = entries.map((entry) => {
      const card = template.content.firstElementChild.cloneNode(true);
      renderHistoryCard(card, entry, days);
      return card;
    });
    $("history-grid").replaceChildren(...cards);
  }

  function renderHistoryCard(card, entry, days) {
    const summary = historyStatuses ? historyStatuses.byId.get(entry.id) : null;
    const expired = Boolean(historyStatuses && historyStatuses.missing.has(entry.id));
    const state = expired ? "expired" : summary ? summary.state : "unknown";
    card.dataset.state = state;
    card.dataset.id = entry.id;
    const first = (summary && summary.names[0]) || entry.names[0] || "";
    const photos = entry.total === 1 ? t("history.onePhoto") : t("history.photos", { count: entry.total });
    const name = entry.kind === "batch" ? `${photos} · ${first}` : first;
    card.querySelector(".item-name").textContent = name;
    const open = card.querySelector(".item-open");
    open.title = entry.kind === "batch" ? entry.names.join(", ") : first;
    open.setAttribute("aria-label", `${t("history.open")} ${name}`);
    card.querySelector(".badge").textContent = state === "unknown" ? "" : t("state." + state);
    const locale = I18N.lang === "zh" ? "zh-CN" : "en";
    card.querySelector(".when").textContent = new Date(entry.created).toLocaleString(locale, {
      dateStyle: "medium",
      timeStyle: "short",
    });
    card.querySelector(".opts").textContent = summary ? summarizeOptions(summary.options) : "";
    card.querySelector(".reason").textContent = expired ? t("history.expiredNote", { days }) : "";
    const img = card.querySelector("img");
    if (summary && summary.thumbnail_url) img.src = summary.thumbnail_url;
    if (expired) {
      open.disabled = true;
    } else {
      open.addEventListener("click", () => {
        if (entry.kind === "single") {
          showTab("single");
          openSingleJob(entry.id, false);
        } else {
          showTab("batch");
          openBatchJob(entry.id, false);
        }
      });
    }
    const download = card.querySelector(".download");
    const ready = summary && summary.state === "done" && summary.done > 0;
    download.classList.toggle("hidden", !ready);
    if (ready) {
      const single = entry.kind === "single";
      download.href = single ? withQuery(summary.thumbnail_url, "download=1") : summary.results_url;
      download.textContent = single ? t("history.download") : t("history.zip");
      download.setAttribute("aria-label", `${download.textContent} ${name}`);
    }
  }

  $("history-clear").addEventListener("click", () => {
    // The ids are the only way back to these results: forgetting them is for good.
    if (HISTORY.list().length && !window.confirm(t("history.confirmClear"))) return;
    HISTORY.clear();
    historyStatuses = null;
    drawHistory([]);
  });

  function rerenderDynamicText() {
    renderSingleStatus();
    renderSelection();
    renderJobPhase();
    if (job) renderJob();
    renderViewer();
    if (activeTab === "history") drawHistory(HISTORY.list());
    updateOptionHints();
  }

  /* ---------- start ---------- */

  if (IMAGE_URLS) {
    $("single-drop-hint").dataset.i18n = "single.hintUrl";
    $("batch-drop-hint").dataset.i18n = "batch.hintUrl";
  }
  I18N.apply();
  refreshLanguageButton();
  updateOptionHints();
  renderSelection();
  refreshHistoryCount();
  // After a reload (or a browser restart), put back what was on screen: the photo, the batch, the tab.
  const restored = HISTORY.current();
  const known = new Set(HISTORY.list().map((entry) => entry.id));
  if (restored.single && known.has(restored.single)) openSingleJob(restored.single, true);
  if (restored.batch && known.has(restored.batch)) openBatchJob(restored.batch, true);
  showTab(TABS.includes(restored.tab) ? restored.tab : "single");
})();
