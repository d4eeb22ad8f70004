/* MatteFlow page: single image (upload / drop / paste -> POST /api/v1/matte -> before/after + download) and
   batches (files or folders -> POST /api/v1/jobs -> poll status -> thumbnails, failures, ZIP).
   Plain JS, no build step; talks only to the JSON API documented at /api/v1/openapi.json. */
"use strict";

(function () {
  const I18N = window.MF_I18N;
  const t = I18N.t;
  const config = JSON.parse(document.getElementById("mf-config").textContent);
  const $ = (id) => document.getElementById(id);

  const IMAGE_EXTENSIONS = /\.(jpe?g|png|webp|bmp|tiff?)$/i;
  const POLL_INTERVAL_MS = 800;
  const POLL_MAX_ERRORS = 15; // consecutive failed polls before giving up
  const STALL_LIMIT_MS = 30 * 60 * 1000; // no item finished for this long: stop polling, say so
  const MEDIA_EXTENSIONS = { "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp" };

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

  let activeTab = "single";
  function showTab(name) {
    activeTab = name;
    for (const tab of ["single", "batch"]) {
      const selected = tab === name;
      $("tab-" + tab).classList.toggle("active", selected);
      $("tab-" + tab).setAttribute("aria-selected", String(selected));
      $("panel-" + tab).classList.toggle("hidden", !selected);
    }
  }
  $("tab-single").addEventListener("click", () => showTab("single"));
  $("tab-batch").addEventListener("click", () => showTab("batch"));

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

  function applyPreset(name) {
    const preset = config.presets[name];
    if (!preset) return;
    // A preset fills the panel; anything changed afterwards is sent explicitly and wins on the server too.
    if ("background" in preset) setBackground(preset.background);
    if ("format" in preset) $("opt-format").value = preset.format;
    $("opt-threshold").value = preset.alpha_threshold ?? 0;
    $("opt-erode").value = preset.erode ?? 0;
    $("opt-feather").checked = Boolean(preset.feather);
    $("opt-model").value = preset.model || config.defaultModel;
    updateOptionHints();
  }

  function updateOptionHints() {
    $("opt-threshold-value").textContent = $("opt-threshold").value;
    const jpegTransparent = $("opt-format").value === "jpeg" && backgroundMode() === "transparent";
    $("opt-hint").textContent = jpegTransparent ? t("options.jpegNote") : "";
    // The preview sits over a checkerboard only when the result can be transparent.
    const opaque = backgroundMode() === "colour" || $("opt-format").value === "jpeg";
    $("compare").classList.toggle("checker", !opaque);
  }

  /** The option fields in the API's names; blanks are left out so the server's defaults apply. */
  function optionEntries(forBatch) {
    // Options confirmed from words ("Say what you want", instruction.js) are sent as they were confirmed.
    const confirmed = window.MF_INSTRUCTION ? window.MF_INSTRUCTION.entries(forBatch) : null;
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
    const maxSide = $("opt-max-side").value.trim();
    if (maxSide) entries.push(["max_side", maxSide]);
    if (forBatch) entries.push(["mask", $("opt-mask").checked ? "true" : "false"]);
    return entries;
  }

  $("opt-preset").addEventListener("change", (e) => applyPreset(e.target.value));
  form.addEventListener("input", updateOptionHints);
  form.addEventListener("change", updateOptionHints);
  form.addEventListener("submit", (e) => e.preventDefault());
  $("opt-colour").addEventListener("input", () => setBackground($("opt-colour").value));
  document.querySelectorAll(".swatch").forEach((swatch) => {
    swatch.style.background = swatch.dataset.colour;
    swatch.addEventListener("click", () => setBackground(swatch.dataset.colour));
  });

  /* ---------- shared helpers ---------- */

  async function errorMessage(response) {
    // Every API error is {"error": code, "message": text}; anything else (a proxy's page) gets its status.
    try {
      const body = await response.json();
      if (body && body.message) return body.message;
    } catch (err) {
      // not JSON: fall through
    }
    return `HTTP ${response.status}`;
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
      onFiles(await filesFromDataTransfer(e.dataTransfer));
    });
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

  /* ---------- single image ---------- */

  let singleFile = null;
  let singleUrls = { before: null, after: null };
  let singleRequest = 0; // id of the latest request: an older answer arriving late is ignored
  let singleState = { key: "", vars: null, error: false };
  let singleCheck = null; // {model, confidence} of the shown result when it is worth a second look

  function setSingleStatus(key, vars, error) {
    singleState = { key, vars, error: Boolean(error) };
    renderSingleStatus();
  }
  function renderSingleStatus() {
    const el = $("single-status");
    const { key, vars, error } = singleState;
    if (!key) el.textContent = "";
    else if (error) el.textContent = `${t("error.prefix")}: ${key === "raw" ? vars.message : t(key, vars)}`;
    else el.textContent = t(key, vars);
    if (!error && key && singleCheck) el.textContent += " · " + t("result.check");
    el.classList.toggle("error", error);
    el.classList.toggle("warn", !error && Boolean(singleCheck));
    $("single-result").dataset.check = singleCheck ? "true" : "false";
  }

  /** A result below the confidence limit is marked "check this one" (the score comes from the server). */
  function needsCheck(confidence) {
    return typeof confidence === "number" && confidence < config.checkBelow;
  }

  function replaceUrl(which, url) {
    if (singleUrls[which]) URL.revokeObjectURL(singleUrls[which]);
    singleUrls[which] = url;
  }

  async function processSingle(file) {
    if (!file) return;
    // Sent whatever its type: the server checks the bytes and its message explains a refusal.
    singleFile = file;
    const request = ++singleRequest;
    replaceUrl("before", URL.createObjectURL(file));
    $("before-img").src = singleUrls.before;
    $("after-img").removeAttribute("src"); // never show the previous photo's result under a new one
    replaceUrl("after", null);
    $("single-drop").classList.add("compact");
    $("single-result").classList.remove("hidden");
    $("single-result").dataset.state = "running";
    $("single-spinner").classList.remove("hidden");
    $("single-download").classList.add("disabled");
    singleCheck = null;
    setSingleStatus("single.processing");

    const body = new FormData();
    body.append("file", file, file.name || "pasted.png");
    for (const [name, value] of optionEntries(false)) body.append(name, value);
    const started = performance.now();
    let response;
    try {
      response = await fetch("/api/v1/matte", { method: "POST", body });
    } catch (err) {
      if (request !== singleRequest) return;
      finishSingle("failed");
      setSingleStatus("error.network", null, true);
      return;
    }
    if (request !== singleRequest) return;
    if (!response.ok) {
      const message = await errorMessage(response);
      if (request !== singleRequest) return;
      finishSingle("failed");
      setSingleStatus("raw", { message }, true);
      return;
    }
    const blob = await response.blob();
    if (request !== singleRequest) return;
    const confidence = parseFloat(response.headers.get("X-MatteFlow-Confidence") || "");
    singleCheck = needsCheck(confidence) ? { confidence } : null;
    replaceUrl("after", URL.createObjectURL(blob));
    const after = $("after-img");
    after.src = singleUrls.after;
    await after.decode().catch(() => undefined);
    const extension = MEDIA_EXTENSIONS[blob.type] || "png";
    const link = $("single-download");
    link.href = singleUrls.after;
    link.download = `${stem(file.name || "image")}_matte.${extension}`;
    link.classList.remove("disabled");
    finishSingle("done");
    setSingleStatus("single.done", {
      seconds: ((performance.now() - started) / 1000).toFixed(1),
      width: after.naturalWidth,
      height: after.naturalHeight,
    });
  }

  function finishSingle(state) {
    $("single-spinner").classList.add("hidden");
    $("single-result").dataset.state = state;
  }

  function resetSingle() {
    singleRequest++;
    singleFile = null;
    singleCheck = null;
    replaceUrl("before", null);
    replaceUrl("after", null);
    $("before-img").removeAttribute("src");
    $("after-img").removeAttribute("src");
    $("single-result").classList.add("hidden");
    $("single-drop").classList.remove("compact");
    $("single-input").value = "";
    setSingleStatus("");
  }

  function setCompare(value) {
    // "Before" covers the left part of the frame; the slider moves the seam.
    $("before-img").style.clipPath = `inset(0 ${100 - value}% 0 0)`;
    $("compare-line").style.left = `${value}%`;
  }

  $("single-input").addEventListener("change", (e) => processSingle(e.target.files[0]));
  $("single-rerun").addEventListener("click", () => processSingle(singleFile));
  $("single-reset").addEventListener("click", resetSingle);
  $("single-download").addEventListener("click", (e) => {
    if (e.currentTarget.classList.contains("disabled")) e.preventDefault();
  });
  $("compare-range").addEventListener("input", (e) => setCompare(Number(e.target.value)));
  // Dragging on the picture moves the seam too (the range input stays the keyboard-accessible control).
  $("compare").addEventListener("pointermove", (e) => {
    if (!e.buttons) return;
    const box = e.currentTarget.getBoundingClientRect();
    const value = Math.max(0, Math.min(100, Math.round((100 * (e.clientX - box.left)) / box.width)));
    $("compare-range").value = value;
    setCompare(value);
  });
  setupDropzone($("single-drop"), (files) => {
    if (files.length > 1) {
      // Several photos dropped on the single view: they are a batch.
      showTab("batch");
      addBatchFiles(files);
    } else if (files.length === 1) {
      processSingle(files[0]);
    }
  });

  // Paste from the clipboard anywhere on the page (screenshots, images copied from a browser).
  document.addEventListener("paste", (e) => {
    const target = e.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA")) return;
    const files = Array.from(e.clipboardData ? e.clipboardData.files : []).filter(isImageFile);
    if (!files.length) return;
    e.preventDefault();
    if (activeTab === "batch") addBatchFiles(files);
    else processSingle(files[0]);
  });

  /* ---------- batch ---------- */

  let batchFiles = [];
  let batchNotice = "";
  let job = null; // the last status JSON
  let jobPhase = { key: "", vars: null, error: false };
  let pollTimer = null;

  function addBatchFiles(files, fromFolder) {
    const accepted = fromFolder ? files.filter(isImageFile) : files;
    batchFiles = batchFiles.concat(accepted);
    batchNotice = "";
    if (batchFiles.length > config.maxFiles) {
      batchFiles = batchFiles.slice(0, config.maxFiles);
      batchNotice = "batch.tooMany";
    }
    renderSelection();
  }

  function renderSelection() {
    const total = batchFiles.reduce((sum, file) => sum + file.size, 0);
    // The server refuses a body over its limit (413); say so before a long upload rather than after.
    const tooBig = total > config.maxUploadMb * 1024 * 1024;
    let text = batchFiles.length
      ? t("batch.selection", { count: batchFiles.length, size: formatBytes(total) })
      : t("batch.none");
    if (batchNotice) text += " — " + t(batchNotice, { max: config.maxFiles });
    if (tooBig) text += " — " + t("batch.tooBig", { mb: config.maxUploadMb });
    $("batch-selection").textContent = text;
    $("batch-selection").classList.toggle("error", tooBig);
    $("batch-start").disabled = batchFiles.length === 0 || tooBig;
  }

  function clearBatch() {
    stopPolling();
    batchFiles = [];
    batchNotice = "";
    job = null;
    $("batch-input").value = "";
    $("batch-folder").value = "";
    $("batch-job").classList.add("hidden");
    $("batch-grid").replaceChildren();
    renderSelection();
  }

  function setJobPhase(key, vars, error) {
    jobPhase = { key, vars, error: Boolean(error) };
    renderJobPhase();
  }
  function renderJobPhase() {
    const el = $("batch-status");
    const { key, vars, error } = jobPhase;
    const text = key === "raw" ? vars.message : key ? t(key, vars) : "";
    el.textContent = error ? `${t("error.prefix")}: ${text}` : text;
    el.classList.toggle("error", error);
  }

  function uploadJob(body, onProgress) {
    // XMLHttpRequest, not fetch: it reports upload progress, which matters for a few hundred MB of photos.
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/v1/jobs");
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) onProgress(Math.round((100 * e.loaded) / e.total));
      });
      xhr.addEventListener("load", () => resolve({ status: xhr.status, body: xhr.response }));
      xhr.addEventListener("error", () => reject(new Error(t("error.network"))));
      xhr.send(body);
    });
  }

  async function startBatch() {
    if (!batchFiles.length) return;
    stopPolling();
    const body = new FormData();
    for (const file of batchFiles) body.append("files", file, file.name);
    for (const [name, value] of optionEntries(true)) body.append(name, value);
    $("batch-start").disabled = true;
    $("batch-job").classList.remove("hidden");
    $("batch-grid").replaceChildren();
    $("batch-zip").classList.add("hidden");
    $("batch-job").dataset.state = "uploading";
    setProgress(0);
    setJobPhase("batch.uploading", { percent: 0 });
    let answer;
    try {
      answer = await uploadJob(body, (percent) => setJobPhase("batch.uploading", { percent }));
    } catch (err) {
      $("batch-start").disabled = false;
      $("batch-job").dataset.state = "failed";
      setJobPhase("raw", { message: err.message }, true);
      return;
    }
    $("batch-start").disabled = false;
    if (answer.status !== 202 || !answer.body || !answer.body.status_url) {
      $("batch-job").dataset.state = "failed";
      const message = (answer.body && answer.body.message) || `HTTP ${answer.status}`;
      setJobPhase("raw", { message }, true);
      return;
    }
    pollJob(answer.body.status_url, { errors: 0, lastProgress: Date.now(), finished: -1 });
  }

  function stopPolling() {
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = null;
  }

  async function pollJob(statusUrl, tracker) {
    let status;
    try {
      const response = await fetch(statusUrl, { cache: "no-store" });
      if (!response.ok) throw new Error(await errorMessage(response));
      status = await response.json();
      tracker.errors = 0;
    } catch (err) {
      tracker.errors += 1;
      if (tracker.errors >= POLL_MAX_ERRORS) {
        setJobPhase("batch.lost", { message: err.message }, true);
        return;
      }
      pollTimer = setTimeout(() => pollJob(statusUrl, tracker), POLL_INTERVAL_MS * 2);
      return;
    }
    job = status;
    renderJob();
    if (status.state === "done" || status.state === "failed") return;
    const finished = status.done + status.failed;
    if (finished !== tracker.finished) {
      tracker.finished = finished;
      tracker.lastProgress = Date.now();
    } else if (Date.now() - tracker.lastProgress > STALL_LIMIT_MS) {
      setJobPhase("batch.stalled", { minutes: Math.round(STALL_LIMIT_MS / 60000) }, true);
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
      setJobPhase("batch.jobFailed", null, true);
    } else {
      setJobPhase("batch.counts", { done: job.done, failed: job.failed, total: job.total });
    }
  }

  function renderItem(card, item) {
    card.dataset.state = item.state;
    card.dataset.index = item.index;
    card.querySelector(".item-name").textContent = item.name;
    card.querySelector(".item-name").title = item.name;
    card.querySelector(".badge").textContent = t("state." + item.state);
    card.querySelector(".reason").textContent = item.state === "failed" ? item.error || "" : "";
    const check = item.state === "done" && needsCheck(item.confidence);
    card.dataset.check = check ? "true" : "false";
    const note = card.querySelector(".check-note");
    note.classList.toggle("hidden", !check);
    note.textContent = t("result.check");
    note.title = check ? t("result.checkWhy", { confidence: item.confidence.toFixed(2) }) : "";
    const img = card.querySelector("img");
    if (item.state === "done" && item.result_url && img.getAttribute("src") !== item.result_url) {
      img.src = item.result_url;
      img.alt = item.name;
    }
  }

  function rerenderDynamicText() {
    renderSingleStatus();
    renderSelection();
    renderJobPhase();
    if (job) renderJob();
    updateOptionHints();
  }

  $("batch-input").addEventListener("change", (e) => addBatchFiles(Array.from(e.target.files), false));
  $("batch-folder").addEventListener("change", (e) => addBatchFiles(Array.from(e.target.files), true));
  $("batch-start").addEventListener("click", startBatch);
  $("batch-clear").addEventListener("click", clearBatch);
  setupDropzone($("batch-drop"), (files) => addBatchFiles(files, false));

  /* ---------- start ---------- */

  I18N.apply();
  refreshLanguageButton();
  setCompare(50);
  updateOptionHints();
  renderSelection();
})();
