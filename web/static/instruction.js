/* "Say what you want": words (中文 or English) -> POST /api/v1/instructions:parse -> the explanation with
   Confirm / Edit -> the confirmed options are the ones the page sends (app.js asks MF_INSTRUCTION.entries()).
   A self-contained block: its own strings, its own markup (#say), nothing else on the page depends on it. */
"use strict";

(function () {
  const I18N = window.MF_I18N;
  const $ = (id) => document.getElementById(id);
  const block = $("say");
  if (!block) return;

  const STRINGS = {
    en: {
      label: "Say what you want",
      placeholder: "e.g. blue background 2-inch ID photo",
      parse: "Understand",
      confirm: "Confirm",
      edit: "Edit",
      reading: "Reading…",
      active: "Using: “{text}”",
      clear: "Clear",
      chips: ["2-inch ID photo on blue", "US passport photo", "remove the clutter, keep only the person", "PNG for a slide"],
    },
    zh: {
      label: "用一句话说出你的需求",
      placeholder: "例如：蓝底二寸证件照",
      parse: "解析",
      confirm: "确认",
      edit: "修改",
      reading: "正在解析…",
      active: "已应用：“{text}”",
      clear: "清除",
      chips: ["蓝底二寸证件照", "去掉背景里的杂物，只留人物", "导出PNG格式，用于PPT演示", "白底电商主图，小于500KB"],
    },
  };
  const s = (key) => (STRINGS[I18N.lang] || STRINGS.en)[key];

  let pending = null; // the last parse answer, waiting for Confirm
  let confirmed = null; // {text, options} once confirmed

  function render() {
    $("say-label").textContent = s("label");
    $("say-input").placeholder = s("placeholder");
    $("say-parse").textContent = s("parse");
    $("say-confirm").textContent = s("confirm");
    $("say-edit").textContent = s("edit");
    $("say-clear").textContent = s("clear");
    const chips = $("say-chips");
    chips.replaceChildren();
    for (const text of s("chips")) {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "say-chip";
      chip.textContent = text;
      chip.addEventListener("click", () => {
        $("say-input").value = text;
        parse();
      });
      chips.appendChild(chip);
    }
    // The ID-photo presets in the preset menu carry both labels.
    document.querySelectorAll("#opt-preset option[data-label-en]").forEach((option) => {
      option.textContent = option.dataset[I18N.lang === "zh" ? "labelZh" : "labelEn"];
    });
    $("say-active-text").textContent = confirmed ? s("active").replace("{text}", confirmed.text) : "";
    $("say-active").classList.toggle("hidden", !confirmed);
  }

  /** state: "reading" (waiting for the server), "ready" (confirmable) or "error". */
  function showExplanation(text, state) {
    $("say-text").textContent = text;
    $("say-explain").classList.remove("hidden");
    $("say-explain").dataset.state = state;
    $("say-confirm").classList.toggle("hidden", state === "error");
    $("say-confirm").disabled = state !== "ready";
  }

  async function parse() {
    const text = $("say-input").value.trim();
    if (!text) return;
    pending = null;
    showExplanation(s("reading"), "reading");
    try {
      const response = await fetch("/api/v1/instructions:parse", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ instruction: text, lang: I18N.lang === "zh" ? "zh" : "en" }),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        showExplanation(body.message || `HTTP ${response.status}`, "error");
        return;
      }
      pending = { text, options: body.options };
      showExplanation(body.explanation, "ready");
    } catch (err) {
      showExplanation(String(err), "error");
    }
  }

  /** Show the confirmed options in the panel's controls, so what will run is visible and editable. */
  function reflect(options) {
    const form = $("options");
    const set = (id, value) => {
      const el = $(id);
      if (el && value !== undefined && value !== null) el.value = String(value);
    };
    const preset = $("opt-preset");
    if (preset) {
      const known = Array.from(preset.options).some((o) => o.value === options.preset);
      preset.value = known ? options.preset : "";
    }
    const transparent = options.background === "transparent";
    const mode = form && form.querySelector(`input[name=bg_mode][value=${transparent ? "transparent" : "colour"}]`);
    if (mode) mode.checked = true;
    if (!transparent) set("opt-colour", options.background);
    set("opt-format", options.format);
    set("opt-model", options.model);
    set("opt-threshold", options.alpha_threshold);
    if ($("opt-threshold-value")) $("opt-threshold-value").textContent = String(options.alpha_threshold);
    set("opt-erode", options.erode);
    set("opt-max-side", options.max_side ?? "");
    if ($("opt-feather")) $("opt-feather").checked = Boolean(options.feather);
    if ($("opt-refine")) $("opt-refine").checked = Boolean(options.refine);
  }

  function confirm() {
    if (!pending) return;
    confirmed = pending;
    pending = null;
    reflect(confirmed.options);
    $("say-explain").classList.add("hidden");
    render();
    document.dispatchEvent(new CustomEvent("mf:instruction", { detail: confirmed }));
    // A photo already on the page is redone with the confirmed options at once.
    if (!$("single-result").classList.contains("hidden")) $("single-rerun").click();
  }

  function clear() {
    confirmed = null;
    render();
  }

  $("say-parse").addEventListener("click", parse);
  $("say-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      parse();
    }
  });
  $("say-confirm").addEventListener("click", confirm);
  $("say-edit").addEventListener("click", () => {
    $("say-explain").classList.add("hidden");
    $("say-input").focus();
  });
  $("say-clear").addEventListener("click", clear);
  // A change made by hand in the panel takes over from the confirmed words.
  const form = $("options");
  if (form) {
    const takeOver = () => {
      if (confirmed) clear();
    };
    form.addEventListener("input", takeOver);
    form.addEventListener("change", takeOver);
    form.querySelectorAll(".swatch").forEach((swatch) => swatch.addEventListener("click", takeOver));
  }
  document.addEventListener("mf:language", render);

  window.MF_INSTRUCTION = {
    /** The confirmed options as the API's form fields, or null when no instruction is confirmed. */
    entries(forBatch) {
      if (!confirmed) return null;
      const entries = [];
      for (const [name, value] of Object.entries(confirmed.options)) {
        if (value === null || value === undefined) continue;
        if (name === "mask" && !forBatch) continue;
        entries.push([name, typeof value === "boolean" ? String(value) : String(value)]);
      }
      return entries;
    },
  };
  render();
})();
