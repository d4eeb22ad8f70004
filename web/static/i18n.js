/* MatteFlow page text in English and Simplified Chinese. Keys are used by data-i18n attributes and by
   app.js through MF_I18N.t(key, vars). The chosen language is remembered in localStorage. */
"use strict";

(function () {
  const STRINGS = {
    en: {
      "tagline": "Background removal for people photos",
      "nav.api": "API",
      "lang.other": "中文",
      "tab.single": "Single image",
      "tab.batch": "Batch",
      "single.drop": "Drop a photo here",
      "single.hint": "or click to choose · paste with Ctrl+V / ⌘V",
      "single.rerun": "Apply options",
      "single.another": "Another photo",
      "single.download": "Download",
      "single.processing": "Removing the background…",
      "single.done": "Done in {seconds} s · {width}×{height}",
      "compare.before": "Before",
      "compare.after": "After",
      "compare.slider": "Before/after",
      "batch.drop": "Drop photos or a folder here",
      "batch.hint": "or click to choose files",
      "batch.folder": "Choose a folder",
      "batch.clear": "Clear",
      "batch.start": "Remove backgrounds",
      "batch.zip": "Download ZIP",
      "batch.selection": "{count} files selected · {size}",
      "batch.none": "No files selected",
      "batch.uploading": "Uploading… {percent}%",
      "batch.counts": "{done} done · {failed} failed · {total} total",
      "batch.finished": "Finished: {done} done, {failed} failed",
      "batch.jobFailed": "The job could not run.",
      "batch.stalled": "No progress for {minutes} minutes; the workers may be down. Reload to check again.",
      "batch.lost": "Lost contact with the server: {message}",
      "batch.tooMany": "At most {max} files per batch; only the first {max} were kept.",
      "batch.tooBig": "over the {mb} MB upload limit: split the batch",
      "state.queued": "Queued",
      "state.running": "Working",
      "state.done": "Done",
      "state.failed": "Failed",
      "options.title": "Options",
      "options.preset": "Preset",
      "options.background": "Background",
      "options.transparent": "Transparent",
      "options.colour": "Colour",
      "options.format": "Format",
      "options.alpha_threshold": "Alpha threshold",
      "options.erode": "Edge erosion (px)",
      "options.max_side": "Max side (px)",
      "options.original": "original",
      "options.feather": "Feather edges",
      "options.mask": "Keep alpha masks (batch)",
      "options.jpegNote": "JPEG has no transparency: a white background is used unless you pick a colour.",
      "preset.none": "None",
      "preset.id-photo": "ID photo",
      "preset.ecommerce": "E-commerce",
      "preset.avatar": "Avatar",
      "options.model": "Model",
      "model.auto": "Automatic",
      "model.people": "People",
      "model.general": "Products & objects",
      "result.check": "Check this one",
      "result.checkWhy": "The model was not sure of this cut-out (confidence {confidence}).",
      "error.prefix": "Error",
      "error.network": "Cannot reach the server.",
      "footer.limits": "Up to {mb} MB per upload and {files} files per batch",
      "footer.status": "Service status",
    },
    zh: {
      "tagline": "人像照片一键抠图",
      "nav.api": "API",
      "lang.other": "English",
      "tab.single": "单张图片",
      "tab.batch": "批量处理",
      "single.drop": "将照片拖到这里",
      "single.hint": "或点击选择 · 也可用 Ctrl+V / ⌘V 粘贴",
      "single.rerun": "应用选项",
      "single.another": "换一张",
      "single.download": "下载",
      "single.processing": "正在去除背景…",
      "single.done": "用时 {seconds} 秒 · {width}×{height}",
      "compare.before": "原图",
      "compare.after": "效果",
      "compare.slider": "原图/效果对比",
      "batch.drop": "将多张照片或文件夹拖到这里",
      "batch.hint": "或点击选择文件",
      "batch.folder": "选择文件夹",
      "batch.clear": "清空",
      "batch.start": "开始抠图",
      "batch.zip": "下载 ZIP",
      "batch.selection": "已选择 {count} 个文件 · {size}",
      "batch.none": "未选择文件",
      "batch.uploading": "正在上传… {percent}%",
      "batch.counts": "完成 {done} · 失败 {failed} · 共 {total}",
      "batch.finished": "处理结束：完成 {done}，失败 {failed}",
      "batch.jobFailed": "任务无法运行。",
      "batch.stalled": "已有 {minutes} 分钟没有进展，处理节点可能已停止。请刷新页面重试。",
      "batch.lost": "与服务器失去连接：{message}",
      "batch.tooMany": "每批最多 {max} 个文件，只保留了前 {max} 个。",
      "batch.tooBig": "超过 {mb} MB 上传上限，请分批提交",
      "state.queued": "排队中",
      "state.running": "处理中",
      "state.done": "完成",
      "state.failed": "失败",
      "options.title": "选项",
      "options.preset": "预设",
      "options.background": "背景",
      "options.transparent": "透明",
      "options.colour": "纯色",
      "options.format": "格式",
      "options.alpha_threshold": "透明度阈值",
      "options.erode": "边缘收缩（像素）",
      "options.max_side": "最长边（像素）",
      "options.original": "原尺寸",
      "options.feather": "边缘羽化",
      "options.mask": "保留蒙版（批量）",
      "options.jpegNote": "JPEG 不支持透明：未选颜色时使用白色背景。",
      "preset.none": "无",
      "preset.id-photo": "证件照",
      "preset.ecommerce": "电商商品图",
      "preset.avatar": "头像",
      "options.model": "模型",
      "model.auto": "自动选择",
      "model.people": "人像",
      "model.general": "商品与物体",
      "result.check": "请检查此图",
      "result.checkWhy": "模型对这张抠图把握不大（置信度 {confidence}）。",
      "error.prefix": "错误",
      "error.network": "无法连接服务器。",
      "footer.limits": "单次上传最多 {mb} MB，每批最多 {files} 个文件",
      "footer.status": "服务状态",
    },
  };

  const STORAGE_KEY = "matteflow.lang";
  let lang = "en";

  function initialLanguage() {
    let stored = null;
    try {
      stored = window.localStorage.getItem(STORAGE_KEY);
    } catch (err) {
      stored = null; // storage disabled (private mode): fall back to the browser's language
    }
    if (stored && STRINGS[stored]) return stored;
    return (navigator.language || "").toLowerCase().startsWith("zh") ? "zh" : "en";
  }

  function t(key, vars) {
    const text = (STRINGS[lang] && STRINGS[lang][key]) || STRINGS.en[key] || key;
    if (!vars) return text;
    return text.replace(/\{(\w+)\}/g, (match, name) => (name in vars ? String(vars[name]) : match));
  }

  function apply(root) {
    const scope = root || document;
    scope.querySelectorAll("[data-i18n]").forEach((el) => {
      const vars = el.dataset.i18nVars ? JSON.parse(el.dataset.i18nVars) : undefined;
      el.textContent = t(el.dataset.i18n, vars);
    });
    scope.querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
      el.setAttribute("placeholder", t(el.dataset.i18nPlaceholder));
    });
    scope.querySelectorAll("[data-i18n-aria]").forEach((el) => {
      el.setAttribute("aria-label", t(el.dataset.i18nAria));
    });
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  }

  function setLanguage(next) {
    lang = STRINGS[next] ? next : "en";
    try {
      window.localStorage.setItem(STORAGE_KEY, lang);
    } catch (err) {
      // Not remembered when storage is disabled; the switch still works for this page.
    }
    apply();
    document.dispatchEvent(new CustomEvent("mf:language", { detail: { lang } }));
  }

  lang = initialLanguage();
  window.MF_I18N = {
    t,
    apply,
    setLanguage,
    get lang() {
      return lang;
    },
  };
})();
