/* MatteFlow page text in English and Simplified Chinese. Keys are used by data-i18n attributes and by
   app.js through MF_I18N.t(key, vars). The chosen language is remembered in localStorage. */
"use strict";

(function () {
  const STRINGS = {
    en: {
      "tagline": "Background removal for people and product photos",
      "nav.api": "API",
      "lang.other": "中文",
      "tab.single": "Single image",
      "tab.batch": "Batch",
      "single.drop": "Drop a photo here",
      "single.hint": "or click to choose · paste with Ctrl+V / ⌘V",
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
      "options.refine": "Refine fine edges (hair, fur; slower)",
      "options.mask": "Also save the alpha mask",
      "options.crop": "Crop",
      "options.crop_margin": "Margin around it (%)",
      "options.output_size": "Output size (px)",
      "options.image": "Photo",
      "options.chooseImage": "Choose a photo…",
      "options.imageKept": "the photo chosen before",
      "options.outputSizeHint": "as cropped, e.g. 1000x1000",
      "crop.none": "Whole photo",
      "crop.subject": "To the subject",
      "crop.square": "Square, subject centred",
      "options.jpegNote": "JPEG has no transparency: a white background is used unless you pick a colour.",
      "preset.none": "None",
      "preset.id-photo": "ID photo",
      "preset.ecommerce": "E-commerce",
      "preset.avatar": "Avatar",
      "preset.marketplace": "Marketplace (white square)",
      "options.model": "Model",
      "model.auto": "Automatic",
      "model.people": "People",
      "model.general": "Products & objects",
      "model.ensemble": "Best quality (slower)",
      "result.check": "Check this one",
      "result.checkWhy": "The model was not sure of this cut-out (confidence {confidence}).",
      "result.tryModel": "Try “{model}”",
      "error.prefix": "Error",
      "error.network": "Cannot reach the server.",
      "footer.limits": "Up to {mb} MB per upload and {files} files per batch",
      "footer.status": "Service status",
      "tab.history": "History",
      "single.updating": "Applying the new options…",
      "single.downloadMask": "Mask",
      "single.beforeMissing": "This browser cannot preview this file.",
      "single.copy": "Copy",
      "single.copied": "Copied: paste it where you need it.",
      "single.copyFailed": "The browser did not allow copying; use Download.",
      "single.stale": "Options changed: updating…",
      "batch.open": "Open {name}",
      "history.title": "Your recent results",
      "history.note": "Kept in this browser only, for as long as the server keeps results ({days} days).",
      "history.empty": "Nothing yet: the photos and batches you process here will be listed.",
      "history.clear": "Clear history",
      "history.confirmClear": "Forget these results in this browser? Their links stop working here; the server deletes the files when they expire.",
      "history.photos": "{count} photos",
      "history.onePhoto": "1 photo",
      "history.open": "Open",
      "history.download": "Download",
      "history.zip": "ZIP",
      "history.expired": "Expired",
      "history.expiredNote": "Deleted from the server after {days} days",
      "history.loading": "Loading…",
      "viewer.close": "Close",
      "viewer.image": "Download image",
      "viewer.mask": "Download mask",
      "viewer.running": "Running “{model}” on this photo…",
      "viewer.otherModel": "Made with “{model}”. Download it here, or put it in the batch ZIP instead of the first result.",
      "viewer.adopt": "Use this one in the batch ZIP",
      "viewer.adopting": "Putting this result in the batch ZIP…",
      "viewer.adopted": "Made with “{model}”: the batch ZIP now has this result (written again in a moment).",
      "viewer.title": "Result",
      "options.defaults": "Defaults",
      "options.summaryTransparent": "transparent",
      "state.expired": "Expired",
      "err.image_empty": "the file is empty (0 bytes)",
      "err.image_unsupported": "not a supported image (use JPEG, PNG, WebP, HEIC, AVIF, BMP or TIFF)",
      "err.image_format": "{format} images are not supported (use JPEG, PNG, WebP, HEIC, AVIF, BMP or TIFF)",
      "err.image_size": "the image has an invalid size",
      "err.image_truncated": "the image file is cut short (truncated)",
      "err.image_corrupt": "the image data is damaged",
      "err.image_too_large": "too many pixels ({pixels}); the limit is {limit}",
      "err.invalid_image": "not a usable image",
      "err.invalid_option": "an option has a value the server does not accept",
      "err.invalid_input": "the input cannot be used",
      "err.no_zip": "a single photo has no ZIP: download the image",
      "err.no_files": "no photos were sent",
      "err.no_file": "no photo was sent",
      "err.too_many_files": "{count} files in one batch; the limit is {limit}",
      "err.payload_too_large": "the upload is over the {limit_mb} MB limit: split the batch",
      "err.job_not_found": "this result has expired or was deleted",
      "err.not_ready": "not ready yet",
      "err.timeout": "no worker finished the photo in time; try again later",
      "err.unavailable": "the service is busy or restarting; try again in a moment",
      "err.internal_error": "the server had a problem",
      "err.model_unavailable": "the model is not available on the server",
      "err.matting_error": "the photo could not be processed",
      "err.item_failed": "this photo failed",
      "err.nothing_to_rerun": "the original photo is no longer on the server: upload it again",
      "err.incompatible_result": "that result has another format than the batch's",
      "err.item_not_found": "this job has no such photo",
      "expired.title": "This link has expired",
      "expired.body": "Results are kept for {days} days, or this one was deleted. Upload the photos again to get new results.",
      "expired.back": "Back to MatteFlow",
    },
    zh: {
      "tagline": "人像与商品照片一键抠图",
      "nav.api": "API",
      "lang.other": "English",
      "tab.single": "单张图片",
      "tab.batch": "批量处理",
      "single.drop": "将照片拖到这里",
      "single.hint": "或点击选择 · 也可用 Ctrl+V / ⌘V 粘贴",
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
      "options.refine": "精细边缘（发丝、毛发；较慢）",
      "options.mask": "同时保存蒙版",
      "options.crop": "裁切",
      "options.crop_margin": "四周留白（%）",
      "options.output_size": "输出尺寸（像素）",
      "options.image": "图片",
      "options.chooseImage": "选择背景图…",
      "options.imageKept": "之前选的背景图",
      "options.outputSizeHint": "同裁切，例如 800x800",
      "crop.none": "整张图",
      "crop.subject": "裁到主体",
      "crop.square": "正方形，主体居中",
      "options.jpegNote": "JPEG 不支持透明：未选颜色时使用白色背景。",
      "preset.none": "无",
      "preset.id-photo": "证件照",
      "preset.ecommerce": "电商商品图",
      "preset.avatar": "头像",
      "preset.marketplace": "电商主图（白底方图）",
      "options.model": "模型",
      "model.auto": "自动选择",
      "model.people": "人像",
      "model.general": "商品与物体",
      "model.ensemble": "最佳质量（较慢）",
      "result.check": "请检查此图",
      "result.checkWhy": "模型对这张抠图把握不大（置信度 {confidence}）。",
      "result.tryModel": "试试“{model}”",
      "error.prefix": "错误",
      "error.network": "无法连接服务器。",
      "footer.limits": "单次上传最多 {mb} MB，每批最多 {files} 个文件",
      "footer.status": "服务状态",
      "tab.history": "历史记录",
      "single.updating": "正在应用新选项…",
      "single.downloadMask": "蒙版",
      "single.beforeMissing": "此浏览器无法预览该文件。",
      "single.copy": "复制",
      "single.copied": "已复制，可直接粘贴使用。",
      "single.copyFailed": "浏览器不允许复制，请使用下载。",
      "single.stale": "选项已更改：正在更新…",
      "batch.open": "打开 {name}",
      "history.title": "最近的结果",
      "history.note": "仅保存在此浏览器中，保留时间与服务器保存结果的时间相同（{days} 天）。",
      "history.empty": "暂无记录：在这里处理的照片和批量任务会列在此处。",
      "history.clear": "清空历史",
      "history.confirmClear": "要在此浏览器中忘记这些结果吗？此后这里无法再打开它们；服务器会在到期后删除文件。",
      "history.photos": "{count} 张照片",
      "history.onePhoto": "1 张照片",
      "history.open": "打开",
      "history.download": "下载",
      "history.zip": "ZIP",
      "history.expired": "已过期",
      "history.expiredNote": "服务器已在 {days} 天后删除",
      "history.loading": "加载中…",
      "viewer.close": "关闭",
      "viewer.image": "下载图片",
      "viewer.mask": "下载蒙版",
      "viewer.running": "正在用“{model}”处理这张图…",
      "viewer.otherModel": "由“{model}”生成。可在这里下载，或在批量 ZIP 中用它替换原来的结果。",
      "viewer.adopt": "在批量 ZIP 中改用这张",
      "viewer.adopting": "正在把这张放进批量 ZIP…",
      "viewer.adopted": "由“{model}”生成：批量 ZIP 已改用这张（稍后重新打包）。",
      "viewer.title": "结果",
      "options.defaults": "默认",
      "options.summaryTransparent": "透明",
      "state.expired": "已过期",
      "err.image_empty": "文件是空的（0 字节）",
      "err.image_unsupported": "不是支持的图片格式（请使用 JPEG、PNG、WebP、HEIC、AVIF、BMP 或 TIFF）",
      "err.image_format": "不支持 {format} 图片（请使用 JPEG、PNG、WebP、HEIC、AVIF、BMP 或 TIFF）",
      "err.image_size": "图片尺寸无效",
      "err.image_truncated": "图片文件不完整（被截断）",
      "err.image_corrupt": "图片数据已损坏",
      "err.image_too_large": "像素过多（{pixels}），上限为 {limit}",
      "err.invalid_image": "不是可用的图片",
      "err.invalid_option": "有选项的值服务器不接受",
      "err.invalid_input": "输入无法使用",
      "err.no_zip": "单张照片没有 ZIP，请直接下载图片",
      "err.no_files": "没有发送任何照片",
      "err.no_file": "没有发送照片",
      "err.too_many_files": "一批 {count} 个文件，上限为 {limit} 个",
      "err.payload_too_large": "上传超过 {limit_mb} MB 上限，请分批提交",
      "err.job_not_found": "此结果已过期或已被删除",
      "err.not_ready": "尚未完成",
      "err.timeout": "处理节点未能及时完成，请稍后再试",
      "err.unavailable": "服务繁忙或正在重启，请稍后再试",
      "err.internal_error": "服务器出现问题",
      "err.model_unavailable": "服务器上的模型不可用",
      "err.matting_error": "无法处理这张照片",
      "err.item_failed": "这张照片处理失败",
      "err.nothing_to_rerun": "服务器上已没有原图，请重新上传",
      "err.incompatible_result": "该结果的格式与这批不同",
      "err.item_not_found": "该任务中没有这张照片",
      "expired.title": "链接已过期",
      "expired.body": "结果只保留 {days} 天，或已被删除。请重新上传照片以获得新结果。",
      "expired.back": "返回 MatteFlow",
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

  function has(key) {
    return Boolean(STRINGS.en[key]);
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
    has,
    apply,
    setLanguage,
    get lang() {
      return lang;
    },
  };
  // Pages without app.js (the expired-link page) translate themselves in the remembered language.
  if (document.documentElement.hasAttribute("data-i18n-auto")) {
    document.addEventListener("DOMContentLoaded", () => apply());
  }
})();
