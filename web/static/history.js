/* MatteFlow history: the ids of this browser's jobs, kept in localStorage (an id is the secret that opens a
   job, so the server keeps no list a stranger could read), and their state asked for in one request
   (GET /api/v1/jobs?ids=...). Ids the server no longer knows are expired, not errors. */
"use strict";

(function () {
  const KEY = "matteflow.history.v1";
  const CURRENT_KEY = "matteflow.current.v1";
  const MAX_ENTRIES = 300;
  const IDS_PER_REQUEST = 200; // the API's limit
  const KEEP_EXPIRED_MS = 7 * 24 * 3600 * 1000; // expired entries stay listed (as expired) this much longer

  let ttlMs = 7 * 24 * 3600 * 1000;

  function isEntry(value) {
    return value && typeof value.id === "string" && (value.kind === "single" || value.kind === "batch");
  }

  function load(key, fallback) {
    try {
      const value = JSON.parse(window.localStorage.getItem(key) || "null");
      return value === null ? fallback : value;
    } catch (err) {
      return fallback; // storage disabled (private mode) or garbage: start empty
    }
  }

  function save(key, value) {
    try {
      window.localStorage.setItem(key, JSON.stringify(value));
    } catch (err) {
      // Not remembered when storage is disabled or full; the page still works for this visit.
    }
  }

  /** Entries newest first: {id, kind: "single"|"batch", names: [..], total, created (ms)}. */
  function list() {
    const raw = load(KEY, []);
    const cutoff = Date.now() - ttlMs - KEEP_EXPIRED_MS;
    return (Array.isArray(raw) ? raw : []).filter((entry) => isEntry(entry) && (entry.created || 0) > cutoff);
  }

  function add(entry) {
    const entries = list().filter((e) => e.id !== entry.id);
    entries.unshift(entry);
    save(KEY, entries.slice(0, MAX_ENTRIES));
  }

  /** A re-rendered photo: its entry now points at the new job (made with the new options). */
  function replace(oldId, newId) {
    const entries = list();
    const entry = entries.find((e) => e.id === oldId);
    if (!entry) return;
    entry.id = newId;
    entry.created = Date.now();
    save(KEY, entries);
    const current = load(CURRENT_KEY, {});
    for (const kind of ["single", "batch"]) if (current[kind] === oldId) current[kind] = newId;
    save(CURRENT_KEY, current);
  }

  function clear() {
    save(KEY, []);
    save(CURRENT_KEY, {});
  }

  /** What the page showed last ({single, batch, tab}), restored after a reload. */
  function current() {
    const value = load(CURRENT_KEY, {});
    return value && typeof value === "object" ? value : {};
  }

  function setCurrent(field, value) {
    const state = current();
    if (value === null || value === undefined) delete state[field];
    else state[field] = value;
    save(CURRENT_KEY, state);
  }

  /** {byId: Map(id -> summary), missing: Set(ids)} for ``ids``; throws on a network or server error. */
  async function fetchStatuses(ids) {
    const byId = new Map();
    const missing = new Set();
    for (let start = 0; start < ids.length; start += IDS_PER_REQUEST) {
      const chunk = ids.slice(start, start + IDS_PER_REQUEST);
      const response = await fetch(`/api/v1/jobs?ids=${chunk.map(encodeURIComponent).join(",")}`, {
        cache: "no-store",
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const body = await response.json();
      for (const job of body.jobs) byId.set(job.id, job);
      for (const id of body.missing) missing.add(id);
    }
    return { byId, missing };
  }

  window.MF_HISTORY = {
    list,
    add,
    replace,
    clear,
    current,
    setCurrent,
    fetchStatuses,
    setTtlHours(hours) {
      ttlMs = hours * 3600 * 1000;
    },
  };
})();
