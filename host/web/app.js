// certctl dashboard. One file, no build step, no dependencies.
//
// Rules this file keeps (the page is served with a strict Content-Security-Policy):
// - DOM is built with createElement/textContent only; API data never goes through innerHTML.
// - No inline styles or handlers: classes for styling, addEventListener for events.
// - The API key lives in sessionStorage only and is sent as `Authorization: Bearer`.
// - Write controls are not created at all when the key lacks the permission.
// - Every promise is handled; navigation aborts requests and timers of the page it leaves.
"use strict";

(() => {
  // ------------------------------------------------------------------ constants

  const API = "/api/v1";
  const STORAGE_KEY = "certctl.api-key";

  const PAGES = [
    ["overview", "Overview"],
    ["certificates", "Certificates"],
    ["issuers", "Issuers"],
    ["dns-solvers", "DNS solvers"],
    ["notifiers", "Notifiers"],
    ["plugins", "Plugins"],
    ["jobs", "Jobs"],
    ["agents", "Agents"],
    ["discoveries", "Discoveries"],
    ["audit", "Audit"],
    ["notifications", "Notifications"],
  ];

  const CERT_STATUSES = [
    ["pending", "Pending", "declared, not issued yet"],
    ["active", "Active", "more than 30 days left"],
    ["expiring", "Expiring", "30 days or less left"],
    ["expired", "Expired", "past their end date"],
    ["revoked", "Revoked", "no longer trusted"],
    ["failed", "Failed", "issuance gave up"],
  ];
  const JOB_STATES = ["pending", "running", "awaiting_csr", "awaiting_approval", "completed", "failed", "cancelled"];
  const UNFINISHED = new Set(["pending", "running", "awaiting_csr", "awaiting_approval"]);
  const JOB_KINDS = ["issuance", "renewal", "revocation", "deployment", "notification"];
  const PROGRESS_KINDS = new Set(["issuance", "renewal", "deployment"]);
  const KEY_TYPES = ["ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"];
  const EVENT_KINDS = ["issued", "renewed", "renewal_failed", "expiring", "revoked", "agent_offline", "plugin_failing", "test"];
  const SEVERITIES = ["info", "warning", "critical"];
  const NOTIFICATION_STATES = [
    ["pending", "pending or retrying"],
    ["delivered", "delivered"],
    ["dead_letter", "dead letter"],
    ["cancelled", "cancelled"],
  ];
  // API value, RFC 5280 name, CRLReason code, what it means.
  const REVOCATION_REASONS = [
    ["unspecified", "unspecified", 0, "No particular reason."],
    ["key_compromise", "keyCompromise", 1, "The private key was, or may have been, exposed."],
    ["ca_compromise", "cACompromise", 2, "The key of the issuing CA was compromised."],
    ["affiliation_changed", "affiliationChanged", 3, "The subject's name or other information changed."],
    ["superseded", "superseded", 4, "Another certificate replaces this one."],
    ["cessation_of_operation", "cessationOfOperation", 5, "The certificate is no longer needed: the service was shut down."],
    ["certificate_hold", "certificateHold", 6, "Put on hold. certctl cannot release a hold: treat it as final."],
    ["privilege_withdrawn", "privilegeWithdrawn", 9, "A privilege the certificate granted was withdrawn."],
    ["aa_compromise", "aACompromise", 10, "The attribute authority was compromised."],
  ];
  const INSTANCE_KINDS = {
    issuers: {
      kind: "issuer", title: "Issuers", one: "issuer", read: "issuers.read", write: "issuers.write", test: false,
      intro: "Issuer instances sign certificates: a local CA, or an ACME CA such as Let's Encrypt.",
    },
    "dns-solvers": {
      kind: "dns-solver", title: "DNS solvers", one: "DNS solver", read: "plugins.read", write: "plugins.write", test: true,
      intro: "DNS solvers publish the TXT records of ACME dns-01 challenges.",
    },
    notifiers: {
      kind: "notifier", title: "Notifiers", one: "notifier", read: "plugins.read", write: "plugins.write", test: true,
      intro: "Notifiers deliver events (issued, renewed, expiring, failures) to people and systems. Routes on the Notifications page choose which events go where.",
    },
  };

  const KEY_HELP = "create one with CERTCTL_API_KEYS_NAMED on the server, or ask an admin to create one (POST /api/v1/api-keys).";
  const MSG_REFUSED = `This API key was not accepted by the server. Check it, or ${KEY_HELP}`;
  const MSG_REVOKED = `This API key was not accepted by the server any more: it may have been revoked. Sign in with a valid key, or ${KEY_HELP}`;
  const MSG_UNREACHABLE = "The server is unreachable. Check that certctl-server is running and that this address reaches it, then try again.";

  // ------------------------------------------------------------------ state

  const state = {
    key: null,
    me: null,
    perms: new Set(),
    nav: { seq: 0, controller: null, timers: new Set() },
    certNames: new Map(), // certificate id → name, filled as pages see certificates
  };

  const can = (permission) => state.perms.has(permission);

  // ------------------------------------------------------------------ DOM helpers

  function append(parent, kids) {
    for (const kid of kids) {
      if (kid == null || kid === false) continue;
      if (Array.isArray(kid)) append(parent, kid);
      else if (kid instanceof Node) parent.appendChild(kid);
      else parent.appendChild(document.createTextNode(String(kid)));
    }
    return parent;
  }

  // h("button", {class: "btn", onclick: fn}, "text", child…). Handlers are listeners, never
  // attributes; `text` sets textContent; `data` fills the dataset; `value` is set last.
  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    let value;
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v == null || v === false) continue;
        if (k === "class") el.className = v;
        else if (k === "text") el.textContent = v;
        else if (k === "value") value = v;
        else if (k === "data") {
          for (const [dk, dv] of Object.entries(v)) if (dv != null) el.dataset[dk] = String(dv);
        } else if (k.startsWith("on") && typeof v === "function") {
          el.addEventListener(k.slice(2), guard(v));
        } else if (k === "checked" || k === "selected" || k === "disabled" || k === "hidden" || k === "required") {
          el[k] = Boolean(v);
        } else if (v === true) el.setAttribute(k, "");
        else el.setAttribute(k, String(v));
      }
    }
    append(el, kids);
    if (value !== undefined) el.value = value;
    return el;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...kids) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, String(v));
    for (const kid of kids) {
      if (kid == null) continue;
      el.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }

  // Wraps an event handler so a thrown error or rejected promise is reported, never lost.
  function guard(fn) {
    return (ev) => {
      try {
        const r = fn(ev);
        if (r && typeof r.then === "function") r.catch(reportError);
      } catch (e) {
        reportError(e);
      }
    };
  }

  function run(fn) {
    guard(fn)();
  }

  let uid = 0;
  const nextId = (prefix) => `${prefix}-${++uid}`;

  function option(value, label, selected) {
    return h("option", { value, selected: selected ? true : null }, label);
  }

  function badge(text, kind) {
    return h("span", { class: `badge badge-${kind || text}` }, text);
  }

  function tableWrap(table, label) {
    // Scrolls sideways on narrow screens: focusable so keyboards can scroll it too.
    return h("div", { class: "table-wrap", role: "region", "aria-label": `${label} (table)`, tabindex: "0" }, table);
  }

  function emptyRow(colspan, text) {
    return h("tr", { class: "empty" }, h("td", { colspan: String(colspan) }, text));
  }

  function button(label, props) {
    return h("button", Object.assign({ type: "button", class: "btn" }, props || {}), label);
  }

  function dl(pairs) {
    const list = h("dl", { class: "props" });
    for (const [term, def, attrs] of pairs) {
      if (def == null || def === false) continue;
      // A ready-made <dd> is reused as it is (it keeps its identity across re-renders).
      const dd = def instanceof HTMLElement && def.tagName === "DD" ? def : h("dd", attrs || null, def);
      list.append(h("div", { class: "prop" }, h("dt", null, term), dd));
    }
    return list;
  }

  function codeText(text) {
    return h("code", { class: "mono" }, text);
  }

  function short(text, n) {
    if (!text) return "";
    return text.length > n ? `${text.slice(0, n)}…` : text;
  }

  // UUIDv7 ids begin with their creation time, so ids of one day look alike: show the end.
  function shortId(id) {
    if (!id) return h("span", { class: "muted" }, "—");
    return h("code", { class: "mono small muted nowrap", title: id }, id.length > 12 ? `…${id.slice(-8)}` : id);
  }

  function shortHash(hex) {
    return h("code", { class: "mono", title: hex }, short(hex, 12));
  }

  function plural(n, one, many) {
    return `${n} ${n === 1 ? one : many || one + "s"}`;
  }

  // ------------------------------------------------------------------ time

  const pad = (n) => String(n).padStart(2, "0");

  function parseTime(iso) {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? null : d;
  }

  function fmtDateTime(iso) {
    const d = parseTime(iso);
    if (!d) return String(iso);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  function relative(iso) {
    const d = parseTime(iso);
    if (!d) return "";
    const secs = (d.getTime() - Date.now()) / 1000;
    const abs = Math.abs(secs);
    if (abs < 45) return secs < 0 ? "just now" : "in a few seconds";
    if (abs < 3600) return rtf.format(Math.round(secs / 60), "minute");
    if (abs < 86400) return rtf.format(Math.round(secs / 3600), "hour");
    if (abs < 86400 * 60) return rtf.format(Math.round(secs / 86400), "day");
    if (abs < 86400 * 730) return rtf.format(Math.round(secs / (86400 * 30.44)), "month");
    return rtf.format(Math.round(secs / (86400 * 365.25)), "year");
  }

  // <time> with local date and time; `rel` adds "(in 3 days)".
  function timeEl(iso, rel) {
    if (!iso) return h("span", { class: "muted" }, "—");
    const d = parseTime(iso);
    return h("time", { datetime: iso, title: d ? d.toString() : iso },
      fmtDateTime(iso), rel ? h("span", { class: "rel" }, ` (${relative(iso)})`) : null);
  }

  function isoDate(d) {
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  }

  function addDays(d, n) {
    const c = new Date(d.getTime());
    c.setDate(c.getDate() + n);
    return c;
  }

  function startOfToday() {
    const d = new Date();
    d.setHours(0, 0, 0, 0);
    return d;
  }

  // ------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, code, message, field, quiet) {
      super(message);
      this.name = "ApiError";
      this.status = status;
      this.code = code;
      this.field = field || null;
      this.quiet = Boolean(quiet);
    }
  }

  function qs(params) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v != null && v !== "") p.set(k, String(v));
    const s = p.toString();
    return s ? `?${s}` : "";
  }

  // One API call. GETs follow the current page's abort signal unless told otherwise; writes
  // are never aborted by navigation. A 401 after sign-in means the key stopped working.
  async function request(method, path, body, opts) {
    const o = opts || {};
    const key = state.key;
    const headers = { Accept: "application/json", Authorization: `Bearer ${key}` };
    const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
    if (o.signal) init.signal = o.signal;
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(API + path, init);
    } catch (e) {
      if (e && e.name === "AbortError") throw e;
      throw new ApiError(0, "network", MSG_UNREACHABLE);
    }
    if (resp.status === 401 && !o.signingIn) {
      if (state.key === key && key !== null) sessionEnded(MSG_REVOKED);
      throw new ApiError(401, "unauthorized", MSG_REVOKED, null, true);
    }
    if (!resp.ok) {
      let code = "http_" + resp.status;
      let message = `The server answered ${resp.status} ${resp.statusText}`.trim();
      let field = null;
      try {
        const data = await resp.json();
        if (data && data.error) {
          code = data.error.code || code;
          message = data.error.message || message;
          field = data.error.field || null;
        }
      } catch (_) {
        // Not JSON: keep the status line.
      }
      throw new ApiError(resp.status, code, message, field);
    }
    if (o.raw) return resp;
    if (resp.status === 204) return null;
    const text = await resp.text();
    return text ? JSON.parse(text) : null;
  }

  const post = (path, body) => request("POST", path, body === undefined ? {} : body);

  // Every page of a small paginated list (instances).
  async function getAll(ctx, path) {
    const items = [];
    let cursor = null;
    for (let i = 0; i < 20; i++) {
      const page = await ctx.get(path + qs({ limit: 500, cursor }));
      items.push(...page.items);
      if (!page.next_cursor) break;
      cursor = page.next_cursor;
    }
    return items;
  }

  function isQuiet(e) {
    return (e && e.name === "AbortError") || (e instanceof ApiError && e.quiet);
  }

  // ------------------------------------------------------------------ status, toasts, errors

  function toast(message, kind) {
    const region = document.getElementById("toasts");
    if (!region) return;
    const t = h("div", { class: `toast toast-${kind || "info"}` }, message);
    region.append(t);
    while (region.children.length > 3) region.firstElementChild.remove();
    setTimeout(() => t.remove(), 5000);
  }

  // An error outside a form: an alert at the top of the page (or a toast when there is none).
  function reportError(e) {
    if (isQuiet(e)) return;
    const message = e instanceof ApiError ? e.message : `Unexpected error: ${e && e.message ? e.message : e}`;
    const box = document.getElementById("page-errors");
    if (!box) {
      toast(message, "error");
      return;
    }
    const alert = h("div", { class: "alert alert-error", role: "alert" },
      h("p", null, message),
      button("Dismiss", { class: "btn btn-small", onclick: () => alert.remove() }));
    box.replaceChildren(alert);
  }

  function clearPageErrors() {
    const box = document.getElementById("page-errors");
    if (box) box.replaceChildren();
  }

  // Safety net: nothing should reach here, but a rejected promise must not go to the console.
  window.addEventListener("unhandledrejection", (ev) => {
    ev.preventDefault();
    reportError(ev.reason);
  });

  // ------------------------------------------------------------------ forms

  // Shows an API error on the form: beside the input named by `field` (matching its
  // data-api-field, or the nearest parent path), else as the form's alert.
  function showFormError(form, err) {
    clearFormErrors(form);
    if (isQuiet(err)) return;
    const message = err instanceof ApiError ? err.message : String(err && err.message ? err.message : err);
    let input = null;
    if (err && err.field) {
      let path = err.field;
      while (path && !input) {
        input = [...form.querySelectorAll("[data-api-field]")].find((el) => el.dataset.apiField === path) || null;
        path = path.includes(".") ? path.slice(0, path.lastIndexOf(".")) : "";
      }
    }
    if (input) {
      fieldError(input, message);
      input.focus();
    } else {
      const box = form.querySelector(".form-error");
      if (box) box.textContent = message;
      else toast(message, "error");
    }
  }

  function fieldError(input, message) {
    const id = `${input.id || nextId("field")}-error`;
    const p = h("p", { class: "field-error", id, role: "alert" }, message);
    input.setAttribute("aria-invalid", "true");
    const described = (input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
    input.setAttribute("aria-describedby", [id, ...described].join(" "));
    const wrap = input.closest(".field") || input.parentElement;
    wrap.append(p);
  }

  function clearFormErrors(form) {
    for (const p of form.querySelectorAll(".field-error")) {
      const input = form.querySelector(`[aria-describedby~="${p.id}"]`);
      if (input) {
        input.removeAttribute("aria-invalid");
        const rest = input.getAttribute("aria-describedby").split(" ").filter((x) => x && x !== p.id);
        if (rest.length) input.setAttribute("aria-describedby", rest.join(" "));
        else input.removeAttribute("aria-describedby");
      }
      p.remove();
    }
    const box = form.querySelector(".form-error");
    if (box) box.textContent = "";
  }

  // A labelled field. `control` is an input/select/textarea with an id.
  function field(label, control, help, extraClass) {
    const kids = [h("label", { for: control.id }, label)];
    if (help) {
      const helpId = `${control.id}-help`;
      control.setAttribute("aria-describedby", helpId);
      kids.push(control, h("p", { class: "help", id: helpId }, help));
    } else kids.push(control);
    return h("div", { class: `field${extraClass ? " " + extraClass : ""}` }, kids);
  }

  function checkField(label, control, help) {
    const kids = [h("div", { class: "check" }, control, h("label", { for: control.id }, label))];
    if (help) {
      const helpId = `${control.id}-help`;
      control.setAttribute("aria-describedby", helpId);
      kids.push(h("p", { class: "help", id: helpId }, help));
    }
    return h("div", { class: "field" }, kids);
  }

  // A form whose submit never reaches the browser (the policy forbids form actions): `onSubmit`
  // runs instead, with the submit button disabled meanwhile and errors shown on the form.
  function apiForm(props, kids, onSubmit) {
    const form = h("form", Object.assign({ novalidate: true }, props), kids, h("div", { class: "form-error", role: "alert" }));
    let busy = false;
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (busy) return;
      if (!form.checkValidity()) {
        const bad = form.querySelector("input:invalid, select:invalid, textarea:invalid");
        clearFormErrors(form);
        if (bad) {
          fieldError(bad, bad.validity.valueMissing ? "Required." : bad.validationMessage || "This value is not valid.");
          bad.focus();
        }
        return;
      }
      clearFormErrors(form);
      busy = true;
      const submits = [...form.querySelectorAll("button[type=submit]")];
      for (const b of submits) b.disabled = true;
      Promise.resolve()
        .then(() => onSubmit(form))
        .catch((e) => showFormError(form, e))
        .finally(() => {
          busy = false;
          for (const b of submits) b.disabled = false;
        });
    });
    return form;
  }

  class LocalError extends Error {
    constructor(field, message) {
      super(message);
      this.name = "LocalError";
      this.field = field;
    }
  }

  const splitList = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

  function parseMap(text, fieldName) {
    const map = {};
    const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
    for (const line of lines) {
      const i = line.indexOf("=");
      if (i <= 0) throw new LocalError(fieldName, `"${line}" is not key=value`);
      map[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
    return map;
  }

  const mapText = (obj) => Object.entries(obj || {}).map(([k, v]) => `${k}=${v}`).join("\n");

  // ------------------------------------------------------------------ dialogs

  // A modal dialog: focus moves into it and stays there (the rest of the page is inert), Esc
  // closes it, and focus returns to where it was. Removed from the DOM when closed.
  function openDialog({ id, title, build, wide }) {
    // A second click before the first dialog opened must not make a second one.
    const open = document.getElementById(id);
    if (open && open.tagName === "DIALOG") return open;
    const opener = document.activeElement;
    const titleId = `${id}-title`;
    const dialog = h("dialog", { id, class: `dialog${wide ? " dialog-wide" : ""}`, "aria-labelledby": titleId });
    const close = () => dialog.close();
    const header = h("div", { class: "dialog-head" },
      h("h2", { id: titleId }, title),
      button("Close", { class: "btn btn-small btn-quiet", "aria-label": `Close: ${title}`, onclick: close }));
    dialog.append(header, h("div", { class: "dialog-body" }, build(close, dialog)));
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener && opener.isConnected && typeof opener.focus === "function") opener.focus();
    });
    document.body.append(dialog);
    dialog.showModal();
    const first = dialog.querySelector(".dialog-body input:not([type=hidden]), .dialog-body select, .dialog-body textarea, .dialog-body button");
    if (first) first.focus();
    return dialog;
  }

  function closeDialogs() {
    for (const d of document.querySelectorAll("dialog[open]")) d.close();
  }

  // Asks before something irreversible. Resolves true when confirmed.
  function confirmDialog({ title, message, confirm, danger }) {
    return new Promise((resolve) => {
      let answer = false;
      const d = openDialog({
        id: "confirm-dialog",
        title,
        build: (close) => {
          const no = button("Cancel", { onclick: close });
          const yes = button(confirm, {
            id: "confirm-yes",
            class: `btn ${danger ? "btn-danger" : "btn-primary"}`,
            onclick: () => { answer = true; close(); },
          });
          return [h("p", null, message), h("div", { class: "form-actions" }, no, yes)];
        },
      });
      // Cancel gets the first focus: the safe choice.
      d.querySelector(".form-actions .btn").focus();
      d.addEventListener("close", () => resolve(answer));
    });
  }

  // ------------------------------------------------------------------ downloads

  async function downloadFile(path, fallbackName) {
    const resp = await request("GET", path, undefined, { raw: true });
    const blob = await resp.blob();
    const cd = resp.headers.get("Content-Disposition") || "";
    const m = /filename="([^"]+)"/.exec(cd);
    const name = (m && m[1]) || fallbackName;
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: name, class: "vh" }, "download");
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    return name;
  }

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      toast("Copied to the clipboard.");
    } catch (_) {
      toast("The browser did not allow copying: select the text and copy it by hand.", "error");
    }
  }

  // ------------------------------------------------------------------ session

  function storedKey() {
    try {
      return sessionStorage.getItem(STORAGE_KEY);
    } catch (_) {
      return null;
    }
  }

  function storeKey(key) {
    try {
      if (key === null) sessionStorage.removeItem(STORAGE_KEY);
      else sessionStorage.setItem(STORAGE_KEY, key);
    } catch (_) {
      // Storage disabled: the key lives in memory for this page only.
    }
  }

  function stopPage() {
    const nav = state.nav;
    nav.seq += 1;
    if (nav.controller) nav.controller.abort();
    nav.controller = null;
    for (const t of nav.timers) clearTimeout(t);
    nav.timers.clear();
    closeDialogs();
    delete document.body.dataset.ready;
  }

  function sessionEnded(message) {
    state.key = null;
    state.me = null;
    state.perms = new Set();
    state.certNames.clear();
    storeKey(null);
    stopPage();
    renderSignIn(message);
  }

  async function signIn(key, form) {
    state.key = key;
    let me;
    try {
      me = await request("GET", "/whoami", undefined, { signingIn: true });
    } catch (e) {
      state.key = null;
      if (e instanceof ApiError && e.status === 401) throw new LocalError(null, MSG_REFUSED);
      throw e;
    }
    if (form && !form.isConnected) return;
    storeKey(key);
    state.me = me;
    state.perms = new Set(me.permissions || []);
    renderShell();
    route(true);
  }

  // ------------------------------------------------------------------ sign-in view

  function renderSignIn(message) {
    const root = document.getElementById("app");
    const input = h("input", {
      id: "api-key", type: "password", autocomplete: "off", spellcheck: "false",
      autocapitalize: "off", required: true, "aria-describedby": "api-key-help",
    });
    const error = h("div", { id: "signin-error", class: "form-error", role: "alert" });
    const submit = h("button", { id: "signin-submit", type: "submit", class: "btn btn-primary" }, "Sign in");
    const form = h("form", { id: "signin", novalidate: true },
      h("div", { class: "field" },
        h("label", { for: "api-key" }, "API key"),
        input,
        h("p", { id: "api-key-help", class: "help" },
          "Any key from CERTCTL_API_KEYS_NAMED or one created through the API. Viewers can look; operators and admins can also change things.")),
      error,
      h("div", { class: "form-actions" }, submit));
    let busy = false;
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (busy) return;
      const key = input.value.trim();
      if (!key) {
        error.textContent = "Enter an API key.";
        input.focus();
        return;
      }
      busy = true;
      submit.disabled = true;
      submit.textContent = "Signing in…";
      error.textContent = "";
      signIn(key, form)
        .catch((e) => {
          if (isQuiet(e)) return;
          error.textContent = e.message;
          input.focus();
          input.select();
        })
        .finally(() => {
          busy = false;
          submit.disabled = false;
          submit.textContent = "Sign in";
        });
    });
    if (message) error.textContent = message;
    document.title = "Sign in — certctl";
    root.replaceChildren(
      h("main", { class: "signin-wrap", id: "main" },
        h("div", { class: "signin-card" },
          h("div", { class: "signin-brand" },
            h("img", { src: "/ui/favicon.svg", alt: "", width: "40", height: "40" }),
            h("span", null, "certctl")),
          h("h1", null, "Sign in"),
          h("p", { class: "muted" }, "Sign in with an API key to manage your TLS certificates."),
          form,
          h("p", { class: "help" },
            "The key stays in this browser tab's session storage: it is forgotten when you sign out or close the tab, and it is never put in a cookie or a URL."))));
    input.focus();
  }

  // ------------------------------------------------------------------ app shell

  function renderShell() {
    const root = document.getElementById("app");
    const nav = h("nav", { id: "nav", class: "nav", "aria-label": "Main" },
      h("ul", null, PAGES.map(([page, label]) =>
        h("li", null, h("a", { href: `#/${page}`, data: { nav: page } }, label)))));
    const toggle = h("button", {
      type: "button", id: "menu-toggle", class: "btn menu-toggle", "aria-expanded": "false", "aria-controls": "nav",
      onclick: () => setMenu(toggle.getAttribute("aria-expanded") !== "true"),
    }, "Menu");
    const skip = h("a", {
      class: "skip-link", href: "#main",
      onclick: (ev) => { ev.preventDefault(); focusTitle(); },
    }, "Skip to content");
    const me = state.me;
    root.replaceChildren(
      skip,
      h("div", { class: "shell" },
        h("header", { class: "topbar" },
          h("a", { class: "brand", href: "#/overview" },
            h("img", { src: "/ui/favicon.svg", alt: "", width: "28", height: "28" }), h("span", null, "certctl")),
          toggle,
          h("div", { class: "who" },
            h("span", { class: "who-label" }, "Signed in as"),
            h("span", { id: "whoami" }, `${me.name} (${me.role})`),
            button("Sign out", { id: "signout", onclick: () => sessionEnded(null) }))),
        nav,
        h("main", { id: "main", class: "main", tabindex: "-1" },
          h("h1", { id: "page-title", tabindex: "-1" }, ""),
          h("div", { id: "page-errors" }),
          h("div", { id: "page" }))));
  }

  function setMenu(open) {
    const toggle = document.getElementById("menu-toggle");
    const nav = document.getElementById("nav");
    if (!toggle || !nav) return;
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    nav.classList.toggle("open", open);
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "Escape") return;
    const toggle = document.getElementById("menu-toggle");
    if (toggle && toggle.getAttribute("aria-expanded") === "true" && !document.querySelector("dialog[open]")) {
      setMenu(false);
      toggle.focus();
    }
  });

  function focusTitle() {
    const t = document.getElementById("page-title");
    if (t) t.focus({ preventScroll: false });
  }

  // ------------------------------------------------------------------ routing

  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, "");
    const q = raw.indexOf("?");
    const path = q >= 0 ? raw.slice(0, q) : raw;
    const params = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : "");
    const parts = path.split("/").filter(Boolean).map((p) => {
      try {
        return decodeURIComponent(p);
      } catch (_) {
        return p;
      }
    });
    return { parts, params };
  }

  // Replaces the hash's query without a navigation (filters stay bookmarkable).
  function setHashQuery(page, params) {
    const s = qs(params);
    const hash = `#/${page}${s}`;
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }

  // A page's context: its abort signal and timers end when the user navigates away.
  function pageContext(page) {
    stopPage();
    const nav = state.nav;
    const seq = nav.seq;
    nav.controller = new AbortController();
    const signal = nav.controller.signal;
    const ctx = {
      page,
      signal,
      alive: () => seq === state.nav.seq && state.key !== null,
      get: (path) => request("GET", path, undefined, { signal }),
      after(ms, fn) {
        const t = setTimeout(() => {
          nav.timers.delete(t);
          if (ctx.alive()) run(fn);
        }, ms);
        nav.timers.add(t);
      },
      ready(name) {
        if (!ctx.alive()) return;
        document.body.dataset.ready = name || page;
        // For benchmarks: the moment the page was drawn, on the page's own clock.
        performance.mark("certctl:ready:" + (name || page));
      },
      busy() {
        if (ctx.alive()) delete document.body.dataset.ready;
      },
    };
    return ctx;
  }

  function route(focus) {
    if (!state.key || !document.getElementById("page")) return;
    const { parts, params } = parseHash();
    const name = parts[0] || "overview";
    if (!location.hash || location.hash === "#" || location.hash === "#/") history.replaceState(null, "", "#/overview");
    setMenu(false);
    let page = name;
    let render = PAGE_RENDERERS[name];
    if (name === "certificates" && parts[1]) {
      page = "certificate";
      render = (ctx, root) => pageCertificate(ctx, root, parts[1]);
    }
    for (const a of document.querySelectorAll("[data-nav]")) {
      if (a.dataset.nav === name) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    const ctx = pageContext(page);
    const root = document.getElementById("page");
    root.replaceChildren();
    root.removeAttribute("aria-busy");
    clearPageErrors();
    if (!render) {
      setTitle("Page not found");
      root.append(h("p", null, "There is no such page. ", h("a", { href: "#/overview" }, "Go to the overview.")));
      ctx.ready("not-found");
      return;
    }
    setTitle(PAGES.find(([p]) => p === name)[1]);
    if (focus) focusTitle();
    root.setAttribute("aria-busy", "true");
    Promise.resolve()
      .then(() => render(ctx, root, params))
      .catch((e) => {
        if (!ctx.alive() || isQuiet(e)) return;
        root.append(h("div", { class: "alert alert-error", role: "alert" },
          h("p", null, `This page could not be loaded: ${e.message}`),
          button("Try again", { onclick: () => route(true) })));
      })
      .finally(() => {
        if (ctx.alive()) root.removeAttribute("aria-busy");
      });
  }

  function setTitle(text) {
    const t = document.getElementById("page-title");
    if (t) t.textContent = text;
    document.title = `${text} — certctl`;
  }

  window.addEventListener("hashchange", () => route(true));

  // A notice for a page the key may not read; the page counts as loaded.
  function denied(ctx, root, permission) {
    root.append(h("div", { class: "alert alert-info" },
      h("p", null, `Your API key (role ${state.me.role}) lacks the ${permission} permission this page needs. Ask an admin for a key with a role that has it.`)));
    ctx.ready();
  }

  function loading(root) {
    const p = h("p", { class: "loading" }, "Loading…");
    root.append(p);
    return p;
  }

  // Previous/next over cursor pages. `cursor()` is the current page's cursor.
  function pager(onChange) {
    const stack = [];
    let current = null;
    let next = null;
    const label = h("span", { class: "pager-label", "aria-live": "polite" }, "Page 1");
    const prev = button("Previous", {
      id: "prev-page", disabled: true,
      onclick: () => {
        if (!stack.length) return;
        current = stack.pop();
        onChange();
      },
    });
    const nextBtn = button("Next", {
      id: "next-page", disabled: true,
      onclick: () => {
        if (!next) return;
        stack.push(current);
        current = next;
        onChange();
      },
    });
    return {
      el: h("nav", { class: "pager", "aria-label": "Pages" }, prev, label, nextBtn),
      cursor: () => current,
      reset() {
        stack.length = 0;
        current = null;
      },
      update(nextCursor) {
        next = nextCursor || null;
        const focused = document.activeElement;
        prev.disabled = stack.length === 0;
        nextBtn.disabled = !next;
        label.textContent = `Page ${stack.length + 1}`;
        if (focused === prev && prev.disabled && !nextBtn.disabled) nextBtn.focus();
        if (focused === nextBtn && nextBtn.disabled && !prev.disabled) prev.focus();
      },
    };
  }

  // Runs `fn` after typing pauses.
  function debounce(fn, ms) {
    let t = null;
    return (...args) => {
      clearTimeout(t);
      t = setTimeout(() => run(() => fn(...args)), ms);
    };
  }

  function statusBadge(status) {
    return badge(status, `status-${status}`);
  }

  function jobStateBadge(s) {
    return badge(s, `job-${s}`);
  }

  // ------------------------------------------------------------------ overview

  async function pageOverview(ctx, root) {
    if (!can("certificates.read")) return denied(ctx, root, "certificates.read");
    const wait = loading(root);
    const o = await ctx.get("/overview");
    if (!ctx.alive()) return;
    wait.remove();
    const c = o.certificates;
    const tile = (key, label, note, href, extra) =>
      h("li", null, h("a", { class: `tile tile-${key}`, href },
        h("span", { class: "tile-label" }, label),
        h("span", { class: "tile-num", data: { count: key } }, String(c[key] ?? 0)),
        note ? h("span", { class: "tile-note" }, note) : null,
        extra || null));
    const tiles = h("ul", { class: "tiles", "aria-label": "Certificates by status" },
      tile("total", "Certificates", "managed in total", "#/certificates"),
      CERT_STATUSES.filter(([k]) => k !== "pending").map(([k, label, note]) => tile(k, label, note, `#/certificates?status=${k}`)),
      tile("pending", "Pending", "declared, not issued yet", "#/certificates?status=pending"));

    const agents = o.agents || { total: 0, online: 0, offline: 0 };
    const plugins = o.plugins || { loaded: 0, failing: [], refused: 0 };
    const small = (key, label, value, note, href, warn) =>
      h("li", null, h("a", { class: `tile tile-small${warn ? " tile-warn" : ""}`, href },
        h("span", { class: "tile-label" }, label),
        h("span", { class: "tile-num", data: { count: key } }, String(value)),
        note ? h("span", { class: "tile-note" }, note) : null));
    const failing = plugins.failing || [];
    const fleet = h("ul", { class: "tiles tiles-small", "aria-label": "Agents, jobs and plugins" },
      small("agents-online", "Agents online", agents.online, `of ${agents.total} registered`, "#/agents"),
      small("agents-offline", "Agents offline", agents.offline, "no heartbeat for 5 minutes", "#/agents", agents.offline > 0),
      small("jobs-pending", "Jobs pending", o.jobs_pending, "waiting for a runner or an agent", "#/jobs?status=pending"),
      small("plugins-failing", "Plugins failing", failing.length,
        failing.length ? failing.join(", ") : `${plugins.loaded} loaded${plugins.refused ? `, ${plugins.refused} refused` : ""}`,
        "#/plugins", failing.length > 0 || plugins.refused > 0));

    const refresh = button("Refresh", { class: "btn btn-small", onclick: () => route(false) });
    root.append(
      h("p", { class: "page-meta" }, "Figures as of ", timeEl(o.generated_at), " ", refresh),
      h("section", { "aria-labelledby": "h-status" }, h("h2", { id: "h-status", class: "vh" }, "Certificates by status"), tiles),
      h("section", { "aria-labelledby": "h-fleet" }, h("h2", { id: "h-fleet", class: "vh" }, "Agents, jobs and plugins"), fleet),
      h("div", { class: "cards" },
        h("section", { class: "card", "aria-labelledby": "h-expiry" },
          h("h2", { id: "h-expiry" }, "Expiries, next 90 days"),
          expiryChart(o.expiry_timeline || [])),
        h("section", { class: "card", "aria-labelledby": "h-activity" },
          h("h2", { id: "h-activity" }, "Issuance activity, last 30 days"),
          activityChart(o.activity || []))));
    ctx.ready();
  }

  // 13 weeks × 7 days from today; colour by urgency, darkness by count.
  function expiryChart(timeline) {
    const counts = new Array(90).fill(0);
    for (const d of timeline) if (d.day >= 0 && d.day < 90) counts[d.day] += d.count;
    const total = counts.reduce((a, b) => a + b, 0);
    const max = Math.max(1, ...counts);
    const within30 = counts.slice(0, 30).reduce((a, b) => a + b, 0);
    const within7 = counts.slice(0, 7).reduce((a, b) => a + b, 0);
    const today = startOfToday();
    const dayName = (d) => d.toLocaleDateString(undefined, { weekday: "short" });
    const dateName = (d) => d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
    const longName = (d) => d.toLocaleDateString(undefined, { weekday: "short", month: "short", day: "numeric" });
    let busiest = 0;
    counts.forEach((n, i) => { if (n > counts[busiest]) busiest = i; });

    const summary = total === 0
      ? "No certificate expires in the next 90 days."
      : `${plural(total, "certificate")} expire in the next 90 days: ${within7} within 7 days, ${within30} within 30 days. ` +
        `Busiest day: ${longName(addDays(today, busiest))} with ${counts[busiest]}.`;

    const CELL = 22, GAP = 3, LEFT = 40, TOP = 22, RIGHT = 26;
    const W = LEFT + 13 * (CELL + GAP) + RIGHT, H = TOP + 7 * (CELL + GAP);
    const chart = svg("svg", {
      id: "expiry-timeline", class: "chart chart-heatmap", viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-labelledby": "expiry-title expiry-desc",
    }, svg("title", { id: "expiry-title" }, "Certificates expiring on each of the next 90 days, one column per week"),
      svg("desc", { id: "expiry-desc" }, summary));
    for (let r = 0; r < 7; r++) {
      chart.append(svg("text", { x: LEFT - 6, y: TOP + r * (CELL + GAP) + CELL / 2 + 4, "text-anchor": "end", class: "chart-text" },
        dayName(addDays(today, r))));
    }
    for (let w = 0; w < 13; w += 2) {
      chart.append(svg("text", { x: LEFT + w * (CELL + GAP), y: TOP - 8, class: "chart-text" },
        w === 0 ? "Today" : dateName(addDays(today, w * 7))));
    }
    for (let d = 0; d < 90; d++) {
      const w = Math.floor(d / 7), r = d % 7;
      const n = counts[d];
      const zone = d < 7 ? "urgent" : d < 30 ? "soon" : "later";
      const level = n === 0 ? 0 : Math.min(4, Math.ceil((4 * n) / max));
      const date = addDays(today, d);
      chart.append(svg("rect", {
        x: LEFT + w * (CELL + GAP), y: TOP + r * (CELL + GAP), width: CELL, height: CELL, rx: 4,
        class: n === 0 ? "heat heat-0" : `heat heat-${zone} heat-l${level}`, "data-day": d,
      }, svg("title", null, `${longName(date)}: ${n === 0 ? "no certificate expires" : `${plural(n, "certificate")} expire${n === 1 ? "s" : ""}`}`)));
    }

    const legend = h("ul", { class: "legend", "aria-label": "Legend" },
      h("li", null, h("span", { class: "swatch heat-urgent heat-l4" }), "within 7 days"),
      h("li", null, h("span", { class: "swatch heat-soon heat-l4" }), "within 30 days"),
      h("li", null, h("span", { class: "swatch heat-later heat-l4" }), "later"),
      h("li", null, h("span", { class: "swatch heat-0" }), "none"),
      h("li", { class: "scale" }, "fewer ",
        [1, 2, 3, 4].map((l) => h("span", { class: `swatch swatch-step heat-later heat-l${l}` })), " more"));

    const rows = [];
    counts.forEach((n, d) => {
      if (!n) return;
      const date = addDays(today, d);
      const href = `#/certificates${qs({ expires_after: isoDate(date), expires_before: isoDate(addDays(date, 1)) })}`;
      rows.push(h("tr", null,
        h("th", { scope: "row" }, longName(date)),
        h("td", { class: "num" }, String(n)),
        h("td", null, h("a", { href }, `List`, h("span", { class: "vh" }, ` certificates expiring ${longName(date)}`)))));
    });
    const table = h("table", { class: "table table-compact" },
      h("caption", { class: "vh" }, "Days with expiries"),
      h("thead", null, h("tr", null, h("th", { scope: "col" }, "Day"), h("th", { scope: "col" }, "Expiring"), h("th", { scope: "col" }, "Certificates"))),
      h("tbody", null, rows.length ? rows : emptyRow(3, "None in the next 90 days.")));
    return [
      h("p", { class: "chart-summary" }, summary),
      h("div", { class: "chart-wrap" }, chart),
      legend,
      h("details", { class: "chart-data" }, h("summary", null, "Expiries as a table"), tableWrap(table, "Expiries by day")),
    ];
  }

  // Stacked bars per day: issued, renewed, failed.
  function activityChart(activity) {
    const days = [...activity].sort((a, b) => a.day - b.day);
    const totals = days.reduce((t, d) => ({ issued: t.issued + d.issued, renewed: t.renewed + d.renewed, failed: t.failed + d.failed }),
      { issued: 0, renewed: 0, failed: 0 });
    const today = startOfToday();
    const dateName = (d) => d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
    const longName = (d) => d.toLocaleDateString(undefined, { weekday: "short", month: "short", day: "numeric" });
    const peak = Math.max(0, ...days.map((d) => d.issued + d.renewed + d.failed));
    const top = peak <= 4 ? 4 : Math.ceil(peak / 4) * 4;
    const summary = `Last 30 days: ${plural(totals.issued, "issuance")}, ${plural(totals.renewed, "renewal")}, ${plural(totals.failed, "failure")}.`;

    const W = 400, H = 190, LEFT = 30, RIGHT = 4, TOP = 10, BOTTOM = 24;
    const plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM;
    const n = Math.max(days.length, 1);
    const slot = plotW / n, barW = Math.max(2, slot * 0.7);
    const y = (v) => TOP + plotH - (v / top) * plotH;
    const chart = svg("svg", {
      id: "activity-chart", class: "chart chart-bars", viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-labelledby": "activity-title activity-desc",
    }, svg("title", { id: "activity-title" }, "Issuances, renewals and failures per day over the last 30 days"),
      svg("desc", { id: "activity-desc" }, summary));
    for (const v of [0, top / 2, top]) {
      chart.append(svg("line", { x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), class: v === 0 ? "axis" : "gridline" }));
      chart.append(svg("text", { x: LEFT - 5, y: y(v) + 4, "text-anchor": "end", class: "chart-text" }, String(v)));
    }
    days.forEach((d, i) => {
      const date = addDays(today, d.day);
      const x = LEFT + i * slot + (slot - barW) / 2;
      const g = svg("g", { class: "bar" },
        svg("title", null, `${longName(date)}: ${d.issued} issued, ${d.renewed} renewed, ${d.failed} failed`));
      let base = 0;
      for (const [k, cls] of [["issued", "bar-issued"], ["renewed", "bar-renewed"], ["failed", "bar-failed"]]) {
        const v = d[k];
        if (!v) continue;
        g.append(svg("rect", { x, y: y(base + v), width: barW, height: y(base) - y(base + v), class: cls }));
        base += v;
      }
      // An invisible full-height target so the tooltip works on empty days too.
      g.append(svg("rect", { x: LEFT + i * slot, y: TOP, width: slot, height: plotH, class: "bar-hit" }));
      chart.append(g);
      if (d.day % 7 === 0) {
        chart.append(svg("text", { x: d.day === 0 ? x + barW : x + barW / 2, y: H - 6, "text-anchor": d.day === 0 ? "end" : "middle", class: "chart-text" },
          d.day === 0 ? "Today" : dateName(date)));
      }
    });

    const legend = h("ul", { class: "legend", "aria-label": "Legend" },
      h("li", null, h("span", { class: "swatch bar-issued" }), `issued (${totals.issued})`),
      h("li", null, h("span", { class: "swatch bar-renewed" }), `renewed (${totals.renewed})`),
      h("li", null, h("span", { class: "swatch bar-failed" }), `failed (${totals.failed})`));
    const rows = [...days].reverse().filter((d) => d.issued || d.renewed || d.failed).map((d) =>
      h("tr", null,
        h("th", { scope: "row" }, longName(addDays(today, d.day))),
        h("td", { class: "num" }, String(d.issued)),
        h("td", { class: "num" }, String(d.renewed)),
        h("td", { class: "num" }, String(d.failed))));
    const table = h("table", { class: "table table-compact" },
      h("caption", { class: "vh" }, "Activity by day"),
      h("thead", null, h("tr", null, ["Day", "Issued", "Renewed", "Failed"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", null, rows.length ? rows : emptyRow(4, "No issuance, renewal or failure in the last 30 days.")));
    return [
      h("p", { class: "chart-summary" }, summary),
      h("div", { class: "chart-wrap" }, chart),
      legend,
      h("details", { class: "chart-data" }, h("summary", null, "Activity as a table"), tableWrap(table, "Activity by day")),
    ];
  }

  // ------------------------------------------------------------------ certificates list

  async function loadIssuers(ctx) {
    if (!can("issuers.read")) return [];
    return getAll(ctx, "/issuers");
  }

  async function pageCertificates(ctx, root, params) {
    if (!can("certificates.read")) return denied(ctx, root, "certificates.read");
    const f = {
      status: params.get("status") || "",
      issuer_id: params.get("issuer_id") || "",
      q: params.get("q") || "",
      sort: params.get("sort") || "",
      expires_after: (params.get("expires_after") || "").slice(0, 10),
      expires_before: (params.get("expires_before") || "").slice(0, 10),
    };
    const issuers = await loadIssuers(ctx);
    if (!ctx.alive()) return;
    const issuerName = new Map(issuers.map((i) => [i.id, i.name]));

    const statusSel = h("select", { id: "filter-status", value: f.status },
      option("", "All statuses"), CERT_STATUSES.map(([k, label]) => option(k, label)));
    const issuerSel = h("select", { id: "filter-issuer", value: f.issuer_id },
      option("", "All issuers"), issuers.map((i) => option(i.id, i.name)));
    const search = h("input", { id: "filter-q", type: "search", value: f.q, autocomplete: "off", placeholder: "name, common name or SAN" });
    const after = h("input", { id: "filter-expires-after", type: "date", value: f.expires_after });
    const before = h("input", { id: "filter-expires-before", type: "date", value: f.expires_before });
    const clear = button("Clear filters", {
      class: "btn btn-quiet",
      onclick: () => {
        statusSel.value = ""; issuerSel.value = ""; search.value = ""; after.value = ""; before.value = "";
        apply();
      },
    });
    const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter certificates", novalidate: true },
      field("Status", statusSel),
      field("Issuer", issuerSel),
      field("Search", search),
      field("Expires on or after", after),
      field("Expires before", before),
      h("div", { class: "field field-end" }, clear));
    filters.addEventListener("submit", (ev) => { ev.preventDefault(); apply(); });

    const tbody = h("tbody");
    const columns = [
      ["name", "Name"], [null, "Status"], [null, "Names"], [null, "Issuer"], ["not_after", "Expires"], [null, "Renews"], ["created_at", "Created"],
    ];
    const headRow = h("tr");
    const table = h("table", { id: "certificates-table", class: "table" },
      h("caption", { class: "vh" }, "Certificates"), h("thead", null, headRow), tbody);
    const count = h("p", { class: "page-meta", "aria-live": "polite" });
    const pages = pager(() => load());

    function renderHead() {
      headRow.replaceChildren();
      const key = f.sort.replace(/^-/, "");
      const desc = f.sort.startsWith("-");
      for (const [sortKey, label] of columns) {
        if (!sortKey) {
          headRow.append(h("th", { scope: "col" }, label));
          continue;
        }
        const active = key === sortKey;
        const th = h("th", { scope: "col", "aria-sort": active ? (desc ? "descending" : "ascending") : "none" },
          h("button", {
            type: "button", class: "sort", data: { sort: sortKey },
            onclick: () => {
              f.sort = active && !desc ? `-${sortKey}` : sortKey;
              pages.reset();
              syncHash();
              renderHead();
              load();
              headRow.querySelector(`button[data-sort="${sortKey}"]`).focus();
            },
          }, label, h("span", { class: "sort-mark", "aria-hidden": "true" }, active ? (desc ? " ▼" : " ▲") : " ↕")));
        headRow.append(th);
      }
    }

    function syncHash() {
      setHashQuery("certificates", f);
    }

    function apply() {
      f.status = statusSel.value;
      f.issuer_id = issuerSel.value;
      f.q = search.value.trim();
      f.expires_after = after.value;
      f.expires_before = before.value;
      pages.reset();
      syncHash();
      load();
    }

    statusSel.addEventListener("change", apply);
    issuerSel.addEventListener("change", apply);
    after.addEventListener("change", apply);
    before.addEventListener("change", apply);
    search.addEventListener("input", debounce(() => { if (ctx.alive()) apply(); }, 300));

    let seq = 0;
    async function load() {
      const mine = ++seq;
      ctx.busy();
      table.setAttribute("aria-busy", "true");
      const query = {
        status: f.status, issuer_id: f.issuer_id, q: f.q, sort: f.sort,
        expires_after: f.expires_after ? `${f.expires_after}T00:00:00Z` : "",
        expires_before: f.expires_before ? `${f.expires_before}T00:00:00Z` : "",
        limit: 50, cursor: pages.cursor(),
      };
      let data;
      try {
        data = await ctx.get(`/certificates${qs(query)}`);
      } catch (e) {
        if (mine !== seq || !ctx.alive()) return;
        table.removeAttribute("aria-busy");
        tbody.replaceChildren(emptyRow(columns.length, "Could not load certificates."));
        reportError(e);
        ctx.ready();
        return;
      }
      if (mine !== seq || !ctx.alive()) return;
      clearPageErrors();
      table.removeAttribute("aria-busy");
      tbody.replaceChildren();
      for (const c of data.items) {
        state.certNames.set(c.id, c.name);
        const extra = c.sans.filter((s) => s !== c.common_name);
        tbody.append(h("tr", { data: { id: c.id } },
          h("th", { scope: "row" }, h("a", { href: `#/certificates/${encodeURIComponent(c.id)}` }, c.name)),
          h("td", { data: { field: "status" } }, statusBadge(c.status)),
          h("td", null, c.common_name, extra.length ? h("span", { class: "muted" }, ` +${extra.length} more`) : null),
          h("td", null, c.issuer_id ? (issuerName.get(c.issuer_id) || shortId(c.issuer_id)) : h("span", { class: "muted" }, "none")),
          h("td", null, timeEl(c.not_after, true)),
          h("td", null, c.renew_at ? timeEl(c.renew_at) : h("span", { class: "muted" }, c.renewal && !c.renewal.auto_renew ? "auto-renew off" : "—")),
          h("td", null, timeEl(c.created_at))));
      }
      if (!data.items.length) {
        const filtered = Object.entries(f).some(([k, v]) => k !== "sort" && v);
        tbody.append(emptyRow(columns.length, filtered ? "No certificate matches these filters." : "No certificates yet."));
      }
      pages.update(data.next_cursor);
      count.textContent = data.items.length
        ? `Showing ${plural(data.items.length, "certificate")}${data.next_cursor ? "; more on the next page" : ""}.`
        : "";
      ctx.ready();
    }

    const toolbar = h("div", { class: "toolbar" });
    if (can("certificates.write")) {
      toolbar.append(button("New certificate", {
        id: "new-certificate", class: "btn btn-primary",
        onclick: () => openCertificateForm(ctx, issuers),
      }));
    }
    root.replaceChildren(
      h("p", { class: "intro" }, "Every certificate certctl manages. Choose one for its versions, jobs and actions."),
      toolbar, filters, count, tableWrap(table, "Certificates"), pages.el);
    renderHead();
    await load();
  }

  async function openCertificateForm(ctx, issuers) {
    const agents = (await ctx.get("/agents")).filter((a) => !a.retired_at);
    if (!ctx.alive()) return;
    openDialog({
      id: "certificate-dialog",
      title: "New certificate",
      wide: true,
      build: (close) => {
        const name = h("input", { id: "cert-name", type: "text", required: true, autocomplete: "off", data: { apiField: "name" } });
        const cn = h("input", { id: "cert-common-name", type: "text", required: true, autocomplete: "off", data: { apiField: "common_name" }, maxlength: "64" });
        const sans = h("input", { id: "cert-sans", type: "text", autocomplete: "off", data: { apiField: "sans" } });
        const issuer = h("select", { id: "cert-issuer", data: { apiField: "issuer_id" } },
          option("", issuers.length ? "None: declare only, issue later" : "None (no issuer instance yet)"),
          issuers.map((i) => option(i.id, i.name)));
        if (issuers.length === 1) issuer.value = issuers[0].id;
        const keyType = h("select", { id: "cert-key-type", data: { apiField: "key_type" } }, KEY_TYPES.map((k) => option(k, k)));
        const keyGen = h("select", { id: "cert-key-generation", data: { apiField: "key_generation" } },
          option("server", "server (no agent needed)"),
          option("agent", "agent (the key stays on its node)"));
        keyGen.value = "server";
        const agent = h("select", { id: "cert-agent", data: { apiField: "agent_id" } },
          option("", agents.length ? "None" : "None (no agent registered)"), agents.map((a) => option(a.id, a.name)));
        agent.addEventListener("change", () => { if (agent.value) keyGen.value = "agent"; });
        const renewBefore = h("input", { id: "cert-renew-before", type: "number", min: "1", max: "365", step: "1", data: { apiField: "renewal.renew_before_days" } });
        const maxAttempts = h("input", { id: "cert-max-attempts", type: "number", min: "1", max: "20", step: "1", value: "5", data: { apiField: "renewal.max_attempts" } });
        const alertDays = h("input", { id: "cert-alert-days", type: "text", value: "30, 14, 7, 1", data: { apiField: "renewal.alert_days" } });
        const autoRenew = h("input", { id: "cert-auto-renew", type: "checkbox", checked: true, data: { apiField: "renewal.auto_renew" } });
        const approval = h("input", { id: "cert-require-approval", type: "checkbox", data: { apiField: "renewal.require_approval" } });
        const profile = h("input", { id: "cert-profile", type: "text", autocomplete: "off", data: { apiField: "profile" } });
        const labels = h("textarea", { id: "cert-labels", rows: "3", data: { apiField: "labels" } });
        const deploy = h("textarea", { id: "cert-deploy", rows: "4", class: "mono", data: { apiField: "deploy" }, placeholder: '{"files": [...], "reload_command": [...]}' });

        return apiForm({ id: "certificate-form" }, [
          h("div", { class: "grid-2" },
            field("Name", name, "Unique in certctl: letters, digits, '.', '_' or '-'."),
            field("Common name", cn, "The main DNS name or IP address (at most 64 characters); always one of the SANs."),
            field("Other names (SANs)", sans, "Comma-separated DNS names or IP addresses, e.g. www.example.com, api.example.com.", "span-2"),
            field("Issuer", issuer, "The issuer instance that signs it."),
            field("Key type", keyType),
            field("Key generation", keyGen, "Server: the server generates the key and keeps it encrypted. Agent: the agent generates it, sends a CSR and deploys the certificate."),
            field("Agent", agent, "The node that holds the key and deploys the certificate.")),
          h("fieldset", null, h("legend", null, "Renewal policy"),
            h("div", { class: "grid-2" },
              field("Renew days before expiry", renewBefore, "Empty: in the last third of the lifetime."),
              field("Attempts per job", maxAttempts, "1 to 20."),
              field("Expiry alerts (days before)", alertDays, "Comma-separated, e.g. 30, 14, 7, 1."),
              h("div", null,
                checkField("Renew automatically", autoRenew),
                checkField("Require approval", approval, "Each issuance waits until someone approves it on the Jobs page.")))),
          h("details", { class: "advanced" }, h("summary", null, "More options"),
            field("Issuer profile", profile, "An ACME profile the CA offers (e.g. shortlived); empty: the issuer's default."),
            field("Labels", labels, "One key=value per line."),
            field("Deployment target (JSON)", deploy, "Where the agent installs it: files, check and reload commands, verification. Needs an agent.")),
          h("div", { class: "form-actions" },
            button("Cancel", { onclick: close }),
            h("button", { id: "certificate-submit", type: "submit", class: "btn btn-primary" }, "Create certificate")),
        ], async (form) => {
          const body = {
            name: name.value.trim(),
            common_name: cn.value.trim(),
            sans: splitList(sans.value),
            key_type: keyType.value,
            key_generation: keyGen.value,
          };
          if (issuer.value) body.issuer_id = issuer.value;
          if (agent.value) body.agent_id = agent.value;
          const alerts = splitList(alertDays.value).map((d) => {
            const n = Number(d);
            if (!Number.isInteger(n)) throw new LocalError("renewal.alert_days", `"${d}" is not a whole number of days`);
            return n;
          });
          body.renewal = {
            auto_renew: autoRenew.checked,
            require_approval: approval.checked,
            max_attempts: Number(maxAttempts.value || 5),
            alert_days: alerts,
          };
          if (renewBefore.value) body.renewal.renew_before_days = Number(renewBefore.value);
          if (profile.value.trim()) body.profile = profile.value.trim();
          if (labels.value.trim()) body.labels = parseMap(labels.value, "labels");
          if (deploy.value.trim()) {
            try {
              body.deploy = JSON.parse(deploy.value);
            } catch (e) {
              throw new LocalError("deploy", `Not valid JSON: ${e.message}`);
            }
          }
          const cert = await post("/certificates", body);
          state.certNames.set(cert.id, cert.name);
          toast(`Certificate ${cert.name} created.${cert.issuer_id ? " Issuance has started." : ""}`);
          close();
          location.hash = `#/certificates/${encodeURIComponent(cert.id)}`;
          void form;
        });
      },
    });
  }

  // ------------------------------------------------------------------ certificate detail

  async function pageCertificate(ctx, root, id) {
    setTitle("Certificate");
    if (!can("certificates.read")) return denied(ctx, root, "certificates.read");
    const wait = loading(root);
    const enc = encodeURIComponent(id);
    // Jobs first: the server stores a new version before it marks the job completed, so a job
    // seen finished here is already reflected in the certificate fetched next.
    const firstJobs = can("jobs.read") ? await ctx.get(`/jobs${qs({ certificate_id: id, limit: 25 })}`) : null;
    const [cert, issuers] = await Promise.all([ctx.get(`/certificates/${enc}`), loadIssuers(ctx)]);
    if (!ctx.alive()) return;
    wait.remove();
    state.certNames.set(cert.id, cert.name);
    setTitle(cert.name);
    const issuerName = new Map(issuers.map((i) => [i.id, i.name]));
    let current = cert;
    let versions = [];
    let jobs = [];
    let agent = null;
    let tracked = null; // the job whose progress is shown
    let pollFor = null; // the job a poll is scheduled for

    const detail = h("div", { id: "certificate-detail" });
    // The status element stays the same node while the page lives; only its badge changes.
    const statusDd = h("dd", { data: { field: "status" } });
    const summary = h("section", { class: "card", "aria-labelledby": "h-summary" });
    const versionBox = h("section", { class: "card", "aria-labelledby": "h-current" });
    const policyBox = h("section", { class: "card", "aria-labelledby": "h-policy" });
    const progress = h("section", { class: "card", "aria-labelledby": "h-progress" });
    const jobLine = h("div", { class: "job-line" });
    const steps = h("ol", { id: "job-progress", class: "steps", "aria-live": "polite" });
    progress.append(h("h2", { id: "h-progress" }, "Progress of the latest job"), jobLine, steps);
    const versionsTbody = h("tbody");
    const versionsTable = h("table", { id: "versions", class: "table" },
      h("caption", { class: "vh" }, "Versions, newest first"),
      h("thead", null, h("tr", null, ["Serial", "Valid from", "Valid until", "SHA-256", "State", "Download"].map((t) => h("th", { scope: "col" }, t)))),
      versionsTbody);
    const chainBox = h("section", { class: "card", "aria-labelledby": "h-chain" });
    const jobsTbody = h("tbody");
    const jobsTable = h("table", { id: "certificate-jobs", class: "table" },
      h("caption", { class: "vh" }, "Jobs of this certificate, newest first"),
      h("thead", null, h("tr", null, ["Job", "State", "Attempts", "Created", "Updated", "Result"].map((t) => h("th", { scope: "col" }, t)))),
      jobsTbody);

    // Actions: only those the key may use are created.
    const actions = h("div", { class: "toolbar", role: "group", "aria-label": "Certificate actions" });
    let renewBtn = null, revokeBtn = null;
    if (can("certificates.write")) {
      renewBtn = button("Renew now", {
        id: "action-renew", class: "btn btn-primary",
        onclick: async () => {
          renewBtn.disabled = true;
          try {
            const job = await post(`/certificates/${enc}/renew`);
            toast(job.state === "awaiting_csr" ? "Renewal requested: waiting for the agent's CSR." : "Renewal requested.");
            clearPageErrors();
            showJob(job);
            await refreshJobs();
          } finally {
            renewBtn.disabled = false;
          }
        },
      });
      revokeBtn = button("Revoke…", { id: "action-revoke", class: "btn btn-danger", onclick: () => openRevoke() });
      actions.append(renewBtn, revokeBtn);
    }
    const partSel = h("select", { id: "download-part" },
      option("fullchain", "Full chain"), option("cert", "Certificate only"), option("chain", "Chain only"));
    const downloadBtn = button("Download PEM", {
      id: "action-download", class: "btn",
      onclick: async () => {
        const name = await downloadFile(`/certificates/${enc}/download${qs({ part: partSel.value })}`, `${current.name}.pem`);
        toast(`Saved ${name}.`);
      },
    });
    actions.append(h("span", { class: "inline-field" }, h("label", { for: "download-part", class: "vh" }, "Part to download"), partSel), downloadBtn);
    let keyBtn = null;
    if (can("private-keys.manage") && current.key_generation === "server") {
      actions.append(keyBtn = button("Download private key", {
        id: "action-private-key", class: "btn",
        onclick: async () => {
          const ok = await confirmDialog({
            title: "Download the private key?",
            message: "The private key of the current version is saved to this computer. The download is recorded in the audit trail. Keep the file secret.",
            confirm: "Download key",
          });
          if (!ok) return;
          const name = await downloadFile(`/certificates/${enc}/private-key`, `${current.name}-key.pem`);
          toast(`Saved ${name}.`);
        },
      }));
    }
    if (can("certificates.write")) {
      actions.append(button("Delete…", {
        id: "action-delete", class: "btn btn-quiet-danger",
        onclick: async () => {
          const ok = await confirmDialog({
            title: `Delete ${current.name}?`,
            message: "certctl stops managing this certificate and forgets its versions and jobs. Deployed copies and the CA's records are not touched.",
            confirm: "Delete certificate",
            danger: true,
          });
          if (!ok) return;
          await request("DELETE", `/certificates/${enc}`);
          state.certNames.delete(current.id);
          toast(`Certificate ${current.name} deleted.`);
          location.hash = "#/certificates";
        },
      }));
    }

    function renderSummary() {
      const c = current;
      const others = c.sans.filter((s) => s !== c.common_name);
      const policy = c.renewal || {};
      const win = c.renewal_window;
      if (statusDd.textContent !== c.status) statusDd.replaceChildren(statusBadge(c.status));
      summary.replaceChildren(h("h2", { id: "h-summary" }, "Summary"), dl([
        ["Status", statusDd],
        ["Common name", c.common_name],
        ["Other names", others.length ? h("ul", { class: "plain" }, others.map((s) => h("li", null, s))) : h("span", { class: "muted" }, "none")],
        ["Issuer", c.issuer_id ? h("a", { href: "#/issuers" }, issuerName.get(c.issuer_id) || c.issuer_id) : h("span", { class: "muted" }, "none: it will not be issued")],
        ["Key", `${c.key_type}, generated by the ${c.key_generation === "server" ? "server" : "agent"}`],
        ["Valid from", c.not_before ? timeEl(c.not_before) : h("span", { class: "muted" }, "not issued yet")],
        ["Valid until", c.not_after ? timeEl(c.not_after, true) : h("span", { class: "muted" }, "not issued yet")],
        ["Renews", c.renew_at ? timeEl(c.renew_at, true) : h("span", { class: "muted" }, policy.auto_renew === false ? "never: auto-renew is off" : "—")],
        ["CA renewal window", win ? h("span", null, timeEl(win.start), " to ", timeEl(win.end),
          win.explanation_url ? h("span", null, " (", h("a", { href: win.explanation_url, rel: "noopener noreferrer", target: "_blank" }, "why"), ")") : null) : null],
        ["Profile", c.profile || null],
        ["Agent", c.agent_id ? agentText() : null],
        ["Deployment", c.deploy ? deploySummary(c.deploy) : null],
        ["Labels", Object.keys(c.labels || {}).length ? h("ul", { class: "plain" }, Object.entries(c.labels).map(([k, v]) => h("li", null, codeText(`${k}=${v}`)))) : null],
        ["Created", timeEl(c.created_at)],
        ["Updated", timeEl(c.updated_at)],
        ["ID", codeText(c.id)],
      ]));
    }

    function agentText() {
      if (!agent) return codeText(current.agent_id);
      const st = agent.retired_at ? "retired" : agent.online ? "online" : "offline";
      return h("span", null, h("a", { href: "#/agents" }, agent.name), " ", badge(st, `agent-${st}`));
    }

    function deploySummary(d) {
      const files = Array.isArray(d.files) ? d.files : [];
      const kids = [];
      if (files.length) {
        kids.push(h("ul", { class: "plain" }, files.map((f) =>
          h("li", null, codeText(typeof f === "string" ? f : f.path || JSON.stringify(f)), f && f.content ? h("span", { class: "muted" }, ` (${f.content})`) : null))));
      }
      kids.push(h("details", null, h("summary", null, "Full target"), h("pre", { class: "pem", tabindex: "0" }, JSON.stringify(d, null, 2))));
      return kids;
    }

    function renderPolicy() {
      const p = current.renewal || {};
      policyBox.replaceChildren(h("h2", { id: "h-policy" }, "Renewal policy"), dl([
        ["Automatic renewal", p.auto_renew ? "on" : "off"],
        ["Renew", p.renew_before_days ? `${plural(p.renew_before_days, "day")} before expiry` : "in the last third of the lifetime"],
        ["Attempts per job", String(p.max_attempts)],
        ["Expiry alerts", (p.alert_days || []).length ? `${p.alert_days.join(", ")} days before expiry` : "none"],
        ["Approval", p.require_approval ? "required for every issuance" : "not required"],
      ]));
    }

    function renderVersions() {
      const cur = versions.find((v) => v.id === current.current_version_id);
      versionBox.replaceChildren(h("h2", { id: "h-current" }, "Current version"));
      if (!cur) {
        versionBox.append(h("p", { class: "muted" }, "Not issued yet."));
      } else {
        versionBox.append(dl([
          ["Serial", codeText(cur.serial)],
          ["SHA-256 fingerprint", h("code", { class: "mono break" }, cur.fingerprint_sha256)],
          ["Valid from", timeEl(cur.not_before)],
          ["Valid until", timeEl(cur.not_after, true)],
          ["Signed by", cur.issuer_id ? (issuerName.get(cur.issuer_id) || cur.issuer_id) : "—"],
          ["Private key", cur.server_key ? "held by the server (encrypted)" : "on the agent's node only"],
          ["Revoked", cur.revoked_at ? h("span", null, timeEl(cur.revoked_at), ` (${reasonName(cur.revocation_reason)})`) : null],
        ]));
      }
      versionsTbody.replaceChildren();
      for (const v of versions) {
        const isCurrent = v.id === current.current_version_id;
        const st = v.revoked_at ? badge(`revoked: ${reasonName(v.revocation_reason)}`, "status-revoked")
          : isCurrent ? badge("current", "status-active") : badge("previous", "muted");
        const dlBtn = button(["PEM", h("span", { class: "vh" }, ` of version ${v.serial}`)], {
          class: "btn btn-small",
          onclick: async () => {
            const name = await downloadFile(`/certificates/${enc}/download${qs({ version: v.id })}`, `${v.serial}.pem`);
            toast(`Saved ${name}.`);
          },
        });
        versionsTbody.append(h("tr", { data: { serial: v.serial, id: v.id } },
          h("th", { scope: "row" }, codeText(v.serial)),
          h("td", null, timeEl(v.not_before)),
          h("td", null, timeEl(v.not_after)),
          h("td", null, shortHash(v.fingerprint_sha256)),
          h("td", null, st),
          h("td", null, dlBtn)));
      }
      if (!versions.length) versionsTbody.append(emptyRow(6, "No version issued yet."));
      chainBox.replaceChildren(h("h2", { id: "h-chain" }, "Chain"));
      if (cur) {
        const pre = h("pre", { id: "chain-pem", class: "pem", tabindex: "0", "aria-label": "Certificate chain, PEM, leaf first" }, cur.chain_pem);
        chainBox.append(
          h("div", { class: "toolbar" },
            button("Copy chain", { id: "copy-chain", class: "btn btn-small", onclick: () => copyText(cur.chain_pem) }),
            h("span", { class: "muted" }, "PEM, leaf first.")),
          pre);
      } else chainBox.append(h("p", { class: "muted" }, "Not issued yet."));
      if (revokeBtn) revokeBtn.disabled = !cur || Boolean(cur.revoked_at) || current.status === "revoked";
      downloadBtn.disabled = !cur;
      partSel.disabled = !cur;
      if (keyBtn) keyBtn.disabled = !cur || !cur.server_key;
    }

    function reasonName(value) {
      const r = REVOCATION_REASONS.find(([v]) => v === value);
      return r ? r[1] : value || "unspecified";
    }

    function renderJobs() {
      jobsTbody.replaceChildren();
      for (const j of jobs) jobsTbody.append(jobRow(j));
      if (!jobs.length) jobsTbody.append(emptyRow(6, "No jobs."));
    }

    function jobRow(j) {
      return h("tr", { data: { id: j.id } },
        h("th", { scope: "row" }, j.kind, h("br"), shortId(j.id)),
        h("td", null, jobStateBadge(j.state)),
        h("td", { class: "num" }, `${j.attempts}/${j.max_attempts}`),
        h("td", null, timeEl(j.created_at)),
        h("td", null, timeEl(j.updated_at)),
        h("td", { class: "col-wide" }, jobResult(j)));
    }

    // Progress of one job: its steps as they happen (issuance, renewal) or its deployment report.
    function showJob(job) {
      const same = tracked && tracked.id === job.id;
      tracked = job;
      const list = jobSteps(job);
      const kindName = job.kind.charAt(0).toUpperCase() + job.kind.slice(1);
      const line = [
        h("p", null, `${kindName} job `, jobStateBadge(job.state), ` · attempt ${job.attempts} of ${job.max_attempts} · started `, timeEl(job.created_at)),
      ];
      if (job.state === "awaiting_csr") line.push(h("p", { class: "muted" }, "Waiting for the agent to send a CSR."));
      if (job.state === "awaiting_approval") {
        line.push(h("p", { class: "muted" }, "Waiting for approval."));
        if (can("jobs.write")) {
          line.push(button("Approve", {
            id: "action-approve", class: "btn btn-primary",
            onclick: async () => {
              const j = await post(`/jobs/${encodeURIComponent(job.id)}/approve`);
              toast("Approved: the job runs now.");
              showJob(j);
            },
          }));
        }
      }
      if (job.state === "pending" && job.attempts > 0 && job.run_after) {
        line.push(h("p", { class: "muted" }, "Next attempt ", timeEl(job.run_after, true), "."));
      }
      if (job.error_message) {
        line.push(h("p", { class: "error-text" }, `Last error${job.error_class ? ` (${job.error_class})` : ""}: ${job.error_message}`));
      }
      if (job.kind === "deployment" && job.payload && job.payload.report && job.payload.report.outcome) {
        line.push(h("p", null, `Outcome: ${job.payload.report.outcome}`));
      }
      jobLine.replaceChildren(...line);
      // Append new steps only, so screen readers announce just those.
      const waiting = steps.querySelector(".waiting");
      if (waiting) waiting.remove();
      const shown = () => steps.querySelectorAll("li[data-step]").length;
      if (!same || list.length < shown()) steps.replaceChildren();
      for (const s of list.slice(shown())) steps.append(s);
      if (!list.length && UNFINISHED.has(job.state)) steps.append(h("li", { class: "waiting muted" }, "Waiting to start…"));
      if (UNFINISHED.has(job.state) && can("jobs.read") && pollFor !== job.id) schedulePoll(job.id, 1000);
    }

    function schedulePoll(jobId, ms) {
      pollFor = jobId;
      ctx.after(ms, () => poll(jobId));
    }

    async function poll(jobId) {
      if (pollFor !== jobId) return; // superseded by another job's poll
      pollFor = null;
      if (!tracked || tracked.id !== jobId) return;
      let job;
      try {
        job = await ctx.get(`/jobs/${encodeURIComponent(jobId)}`);
      } catch (e) {
        if (isQuiet(e) || !ctx.alive()) return;
        // Try again shortly; a transient failure should not stop the progress.
        if (pollFor === null) schedulePoll(jobId, 3000);
        return;
      }
      if (!ctx.alive() || !tracked || tracked.id !== jobId) return;
      const finished = !UNFINISHED.has(job.state);
      const stateChanged = job.state !== tracked.state;
      showJob(job);
      if (finished || stateChanged) await refreshAll();
      if (finished) {
        const word = { completed: "completed", failed: "failed", cancelled: "was cancelled" }[job.state] || job.state;
        toast(`The ${job.kind} job ${word}.`, job.state === "failed" ? "error" : "info");
      }
    }

    async function refreshJobs(preloaded) {
      if (!can("jobs.read")) return;
      const page = preloaded || await ctx.get(`/jobs${qs({ certificate_id: id, limit: 25 })}`);
      if (!ctx.alive()) return;
      jobs = page.items;
      renderJobs();
      const latest = jobs.find((j) => PROGRESS_KINDS.has(j.kind));
      if (latest && (!tracked || latest.id !== tracked.id) && (!tracked || !UNFINISHED.has(tracked.state) || latest.created_at >= tracked.created_at)) {
        showJob(latest);
      }
    }

    async function refreshAll() {
      const [c, v] = await Promise.all([ctx.get(`/certificates/${enc}`), ctx.get(`/certificates/${enc}/versions`)]);
      if (!ctx.alive()) return;
      current = c;
      versions = v;
      renderSummary();
      renderPolicy();
      renderVersions();
      await refreshJobs();
    }

    function openRevoke() {
      const cur = versions.find((v) => v.id === current.current_version_id);
      openDialog({
        id: "revoke-dialog",
        title: `Revoke ${current.name}`,
        build: (close) => {
          const reason = h("select", { id: "revoke-reason", data: { apiField: "reason" } },
            REVOCATION_REASONS.map(([value, rfcName]) => option(value, rfcName)));
          const help = h("p", { class: "help", id: "revoke-reason-help", "aria-live": "polite" });
          const describe = () => {
            const r = REVOCATION_REASONS.find(([v]) => v === reason.value);
            help.textContent = r ? `CRLReason ${r[2]}: ${r[3]}` : "";
          };
          reason.setAttribute("aria-describedby", "revoke-reason-help");
          reason.addEventListener("change", describe);
          reason.addEventListener("input", describe);
          describe();
          return apiForm({ id: "revoke-form" }, [
            h("p", null, "The current version",
              cur ? [" (serial ", codeText(cur.serial), ")"] : null,
              " is revoked at once and listed on the issuer's CRL; the issuer is told too. This cannot be undone."),
            h("div", { class: "field" }, h("label", { for: "revoke-reason" }, "Reason (RFC 5280)"), reason, help),
            h("div", { class: "form-actions" },
              button("Cancel", { onclick: close }),
              h("button", { id: "revoke-confirm", type: "submit", class: "btn btn-danger" }, "Revoke")),
          ], async () => {
            await post(`/certificates/${enc}/revoke`, { reason: reason.value });
            close();
            toast(`Certificate ${current.name} revoked (${reasonName(reason.value)}).`);
            await refreshAll();
          });
        },
      });
    }

    const fetches = [ctx.get(`/certificates/${enc}/versions`)];
    if (cert.agent_id) fetches.push(ctx.get(`/agents/${encodeURIComponent(cert.agent_id)}`).catch((e) => {
      if (isQuiet(e)) throw e;
      return null;
    }));
    const [v, a] = await Promise.all(fetches);
    if (!ctx.alive()) return;
    versions = v;
    agent = a || null;

    const jobsSection = can("jobs.read")
      ? h("section", { class: "card card-wide", "aria-labelledby": "h-jobs" },
        h("h2", { id: "h-jobs" }, "Jobs"), tableWrap(jobsTable, "Jobs of this certificate"))
      : null;
    detail.append(
      h("div", { class: "cards" }, summary, h("div", { class: "stack" }, versionBox, policyBox)),
      can("jobs.read") ? progress : null,
      h("section", { class: "card card-wide", "aria-labelledby": "h-versions" },
        h("h2", { id: "h-versions" }, "Versions"), tableWrap(versionsTable, "Versions")),
      chainBox,
      jobsSection);
    root.append(h("p", { class: "page-meta" }, h("a", { href: "#/certificates" }, "← All certificates")), actions, detail);
    renderSummary();
    renderPolicy();
    renderVersions();
    if (can("jobs.read")) {
      await refreshJobs(firstJobs);
      if (!tracked) {
        steps.replaceChildren();
        jobLine.replaceChildren(h("p", { class: "muted" }, current.issuer_id ? "No issuance job yet." : "No issuance job: the certificate has no issuer."));
      }
    }
    ctx.ready("certificate");
  }

  // A job's steps as list items (`li[data-step]`).
  function jobSteps(job) {
    const p = job.payload || {};
    if (job.kind === "deployment") {
      const report = p.report || {};
      return (report.steps || []).map((s) => h("li", { data: { step: s.step }, class: s.ok ? "ok" : "bad" },
        badge(s.ok ? "ok" : "failed", s.ok ? "status-active" : "status-failed"), " ",
        h("strong", null, s.step), h("span", { class: "muted" }, ` ${s.millis} ms`),
        s.detail ? h("pre", { class: "step-detail", tabindex: "0" }, s.detail) : null));
    }
    return (p.steps || []).map((s) => h("li", { data: { step: s.step }, class: s.step === "failed" ? "bad" : "" },
      h("span", { class: "step-time" }, s.at ? timeEl(s.at) : ""), " ",
      h("strong", null, s.step), " ", h("span", null, s.message || "")));
  }

  function jobResult(j) {
    const kids = [];
    if (j.error_message) kids.push(h("p", { class: "error-text" }, j.error_class ? badge(j.error_class, "error") : null, " ", j.error_message));
    const list = jobSteps(j);
    if (list.length) {
      const label = j.kind === "deployment" ? `Deployment report${j.payload.report.outcome ? `: ${j.payload.report.outcome}` : ""}` : `${plural(list.length, "step")}`;
      kids.push(h("details", null, h("summary", null, label), h("ol", { class: "steps" }, list)));
    }
    if (!kids.length) kids.push(h("span", { class: "muted" }, UNFINISHED.has(j.state) ? "in progress" : "—"));
    return kids;
  }

  // ------------------------------------------------------------------ plugin instances

  function secretKeysOf(plugin) {
    const schema = (plugin && plugin.config_schema) || {};
    return new Set(Object.keys(schema).filter((k) => schema[k] && schema[k].secret));
  }

  function configValueText(v) {
    if (v === null || v === undefined) return "—";
    if (Array.isArray(v)) return v.join(", ");
    if (typeof v === "object") return Object.entries(v).map(([k, x]) => `${k}=${x}`).join("; ");
    const s = String(v);
    if (s.includes("-----BEGIN")) return `${s.split("\n")[0].trim()} … (${s.length} characters)`;
    return short(s, 120);
  }

  function configList(config, secrets) {
    const entries = Object.entries(config || {});
    if (!entries.length) return h("span", { class: "muted" }, "defaults");
    return h("dl", { class: "config" }, entries.map(([k, v]) => h("div", null,
      h("dt", null, k),
      h("dd", null, secrets.has(k) ? h("span", { class: "masked" }, "••••••", h("span", { class: "vh" }, " (secret, hidden)")) : configValueText(v)))));
  }

  async function pageInstances(ctx, root, page) {
    const k = INSTANCE_KINDS[page];
    if (!can(k.read)) return denied(ctx, root, k.read);
    const wait = loading(root);
    const [items, pluginList] = await Promise.all([
      getAll(ctx, `/${page}`),
      can("plugins.read") ? ctx.get("/plugins") : Promise.resolve({ plugins: [] }),
    ]);
    if (!ctx.alive()) return;
    wait.remove();
    const plugins = (pluginList.plugins || []).filter((p) => p.kind === k.kind);
    const byName = new Map(plugins.map((p) => [p.name, p]));
    const writable = can(k.write);

    const tbody = h("tbody");
    const head = ["Name", "Plugin", "Configuration", k.kind === "issuer" ? "State" : null, "Created", writable ? "Actions" : null].filter(Boolean);
    const table = h("table", { id: "instances-table", class: "table" },
      h("caption", { class: "vh" }, k.title),
      h("thead", null, h("tr", null, head.map((t) => h("th", { scope: "col" }, t)))), tbody);

    function render(list) {
      tbody.replaceChildren();
      for (const inst of list) {
        const plugin = byName.get(inst.plugin);
        const cells = [
          h("th", { scope: "row" }, h("span", { class: "strong" }, inst.name), h("br"), h("code", { class: "mono muted small", title: "ID" }, inst.id)),
          h("td", null, inst.plugin, plugin ? h("span", { class: "muted" }, ` ${plugin.version}`) : h("span", { class: "muted" }, " (not loaded)")),
          h("td", null, configList(inst.config, secretKeysOf(plugin))),
        ];
        if (k.kind === "issuer") {
          const paused = inst.paused_until && parseTime(inst.paused_until) > new Date();
          cells.push(h("td", null, paused
            ? [badge("paused", "status-expiring"), h("p", { class: "small" }, "until ", timeEl(inst.paused_until, true), inst.paused_reason ? `: ${inst.paused_reason}` : "")]
            : badge("active", "status-active")));
        }
        cells.push(h("td", null, timeEl(inst.created_at)));
        if (writable) {
          const acts = h("div", { class: "row-actions" },
            button("Edit", { class: "btn btn-small", "aria-label": `Edit ${inst.name}`, data: { action: "edit" }, onclick: () => openInstanceForm(inst) }));
          if (k.test) acts.append(button("Test", { class: "btn btn-small", "aria-label": `Test ${inst.name}`, data: { action: "test" }, onclick: () => openTest(inst) }));
          acts.append(button("Delete", {
            class: "btn btn-small btn-quiet-danger", "aria-label": `Delete ${inst.name}`, data: { action: "delete" },
            onclick: async () => {
              const ok = await confirmDialog({
                title: `Delete ${k.one} ${inst.name}?`,
                message: k.kind === "issuer"
                  ? "An issuer that certificates still use cannot be deleted. Its CA key stays in the keystore."
                  : "It stops working at once. Routes or issuers that use it stop using it.",
                confirm: `Delete ${k.one}`,
                danger: true,
              });
              if (!ok) return;
              await request("DELETE", `/${page}/${encodeURIComponent(inst.id)}`);
              toast(`${k.one.charAt(0).toUpperCase() + k.one.slice(1)} ${inst.name} deleted.`);
              await reload();
            },
          }));
          cells.push(h("td", null, acts));
        }
        tbody.append(h("tr", { data: { name: inst.name, id: inst.id } }, cells));
      }
      if (!list.length) tbody.append(emptyRow(head.length, `No ${k.title.toLowerCase()} yet.`));
    }

    async function reload() {
      ctx.busy();
      const list = await getAll(ctx, `/${page}`);
      if (!ctx.alive()) return;
      render(list);
      ctx.ready();
    }

    function openInstanceForm(inst) {
      const editing = Boolean(inst);
      openDialog({
        id: "instance-dialog",
        title: editing ? `Edit ${k.one} ${inst.name}` : `New ${k.one}`,
        wide: true,
        build: (close) => {
          const name = h("input", { id: "instance-name", type: "text", required: true, autocomplete: "off", value: editing ? inst.name : "", data: { apiField: "name" } });
          const pluginSel = h("select", { id: "instance-plugin", required: true, disabled: editing, data: { apiField: "plugin" } },
            editing ? option(inst.plugin, inst.plugin) : option("", plugins.length ? "Choose a plugin" : `No ${k.kind} plugin is loaded`),
            editing ? null : plugins.map((p) => option(p.name, p.name)));
          const pluginHelp = h("p", { class: "help", id: "instance-plugin-help" });
          pluginSel.setAttribute("aria-describedby", "instance-plugin-help");
          const configBox = h("div", { class: "config-fields" });
          const renderConfig = () => {
            const p = byName.get(pluginSel.value);
            pluginHelp.textContent = p ? p.description : editing ? "This plugin is not loaded: its configuration cannot be edited here." : "";
            configBox.replaceChildren();
            if (p) configBox.append(configFieldset(p, editing ? inst.config : null));
          };
          pluginSel.addEventListener("change", renderConfig);
          renderConfig();
          return apiForm({ id: "instance-form" }, [
            field("Name", name, "Letters, digits, '.', '_' or '-'. Certificates and routes refer to it by its ID, so renaming is safe."),
            h("div", { class: "field" }, h("label", { for: "instance-plugin" }, "Plugin"), pluginSel, pluginHelp),
            configBox,
            h("div", { class: "form-actions" },
              button("Cancel", { onclick: close }),
              h("button", { id: "instance-submit", type: "submit", class: "btn btn-primary" }, editing ? "Save changes" : `Create ${k.one}`)),
          ], async (form) => {
            const p = byName.get(pluginSel.value);
            if (!p) throw new LocalError("plugin", editing ? "This plugin is not loaded." : "Choose a plugin.");
            const config = readConfig(form, p, editing ? inst.config : null);
            if (editing) {
              const body = { config };
              if (name.value.trim() !== inst.name) body.name = name.value.trim();
              await request("PATCH", `/${page}/${encodeURIComponent(inst.id)}`, body);
              toast(`${inst.name} saved.`);
            } else {
              const created = await post(`/${page}`, { name: name.value.trim(), plugin: p.name, config });
              toast(`${k.one.charAt(0).toUpperCase() + k.one.slice(1)} ${created.name} created.`);
            }
            close();
            await reload();
          });
        },
      });
    }

    function openTest(inst) {
      openDialog({
        id: "test-dialog",
        title: `Test ${inst.name}`,
        wide: true,
        build: (close) => {
          const out = h("div", { id: "test-report", "aria-live": "polite" });
          const kids = [];
          let zone = null;
          if (k.kind === "dns-solver") {
            zone = h("input", { id: "test-zone", type: "text", required: true, autocomplete: "off", data: { apiField: "zone" } });
            kids.push(field("Zone", zone, "The solver writes and then deletes a TXT record _certctl-test.<zone>."));
          } else {
            kids.push(h("p", null, "Sends a test event through this notifier."));
          }
          kids.push(h("div", { class: "form-actions" },
            h("button", { id: "test-run", type: "submit", class: "btn btn-primary" }, "Run test")), out);
          return apiForm({ id: "test-form" }, kids, async () => {
            out.replaceChildren(h("p", { class: "loading" }, "Running…"));
            let report;
            try {
              report = await post(`/${page}/${encodeURIComponent(inst.id)}/test`, zone ? { zone: zone.value.trim() } : {});
            } catch (e) {
              out.replaceChildren();
              throw e;
            }
            out.replaceChildren(testReport(report));
          });
        },
      });
    }

    const toolbar = h("div", { class: "toolbar" });
    if (writable) {
      toolbar.append(button(`New ${k.one}`, { id: "new-instance", class: "btn btn-primary", onclick: () => openInstanceForm(null) }));
    }
    root.append(h("p", { class: "intro" }, k.intro), toolbar, tableWrap(table, k.title));
    render(items);
    ctx.ready();
  }

  function testReport(report) {
    const rows = report.steps.map((s) => h("tr", null,
      h("th", { scope: "row" }, s.op),
      h("td", null, badge(s.outcome, s.outcome === "ok" ? "status-active" : "status-failed")),
      h("td", { class: "num" }, `${s.duration_ms} ms`),
      h("td", null, s.error || "—",
        s.logs && s.logs.length ? h("details", null, h("summary", null, plural(s.logs.length, "log line")),
          h("pre", { class: "step-detail", tabindex: "0" }, s.logs.map(([lvl, msg]) => `${lvl}: ${msg}`).join("\n"))) : null)));
    return h("div", { class: `alert ${report.ok ? "alert-ok" : "alert-error"}`, role: report.ok ? "status" : "alert" },
      h("p", { class: "strong" }, report.ok ? "The test passed." : "The test failed."),
      tableWrap(h("table", { class: "table table-compact" },
        h("caption", { class: "vh" }, "Test steps"),
        h("thead", null, h("tr", null, ["Call", "Outcome", "Took", "Error"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", null, rows)), "Test steps"));
  }

  // One input per configuration key of the plugin's manifest.
  function schemaOf(plugin) {
    const schema = Object.assign({}, plugin.config_schema || {});
    // Plugins that call out accept a host-reserved CA bundle for their TLS connections.
    if ((plugin.requested_hosts || []).length && !schema.ca_bundle) {
      schema.ca_bundle = {
        type: "string", required: false, secret: false,
        description: "CA certificates (PEM, or file:/path) this instance trusts for its outbound TLS, in addition to the system roots. Reserved by the host.",
      };
    }
    return schema;
  }

  // "Description" + "More." with a full stop between them.
  function joinHelp(a, b) {
    if (!a) return b;
    return /[.!?)]$/.test(a.trim()) ? `${a} ${b}` : `${a}. ${b}`;
  }

  function configFieldset(plugin, current) {
    const schema = schemaOf(plugin);
    const keys = Object.keys(schema).sort((a, b) => (Number(schema[b].required) - Number(schema[a].required)) || a.localeCompare(b));
    const fs = h("fieldset", { class: "config-set" }, h("legend", null, `Configuration of ${plugin.name}`));
    if (!keys.length) fs.append(h("p", { class: "muted" }, "This plugin takes no configuration."));
    for (const key of keys) {
      const spec = schema[key];
      const id = `config-${key}`;
      const value = current ? current[key] : undefined;
      const common = { id, name: `config.${key}`, data: { apiField: `config.${key}` }, autocomplete: "off" };
      let control;
      let help = spec.description || "";
      if (spec.type === "boolean") {
        control = h("select", common,
          spec.required ? null : option("", "default"), option("true", "true"), option("false", "false"));
        control.value = value === true ? "true" : value === false ? "false" : "";
        if (spec.required && control.value === "") control.value = "false";
      } else if (spec.type === "integer") {
        control = h("input", Object.assign({ type: "number", step: "1", inputmode: "numeric" }, common));
        if (value !== undefined && value !== null) control.value = String(value);
      } else if (spec.type === "string-map") {
        control = h("textarea", Object.assign({ rows: "3", class: "mono" }, common));
        if (value) control.value = mapText(value);
        help = joinHelp(help, "One key=value per line.");
      } else if (spec.type === "string-list") {
        control = h("input", Object.assign({ type: "text" }, common));
        if (Array.isArray(value)) control.value = value.join(", ");
        help = joinHelp(help, "Comma-separated.");
      } else if (spec.secret) {
        control = h("input", Object.assign({ type: "password", spellcheck: "false" }, common, { autocomplete: "new-password" }));
        help = joinHelp(help, "A reference, not the secret itself: env:NAME (an environment variable of the server) or file:/path." +
          (current && value ? " Leave empty to keep the current reference." : ""));
        if (current && value) control.placeholder = "unchanged";
      } else if (key.endsWith("_pem") || key === "ca_bundle") {
        control = h("textarea", Object.assign({ rows: "4", class: "mono" }, common));
        if (typeof value === "string") control.value = value;
      } else {
        control = h("input", Object.assign({ type: "text" }, common));
        if (value !== undefined && value !== null) control.value = String(value);
      }
      const needsValue = spec.required && !(spec.secret && current && value);
      if (needsValue) control.required = true;
      const label = [key, spec.required ? h("span", { class: "req" }, " (required)") : h("span", { class: "muted" }, " (optional)")];
      fs.append(field(label, control, help || null));
    }
    return fs;
  }

  function readConfig(form, plugin, current) {
    const schema = schemaOf(plugin);
    const config = {};
    // Keys the form does not show (if any) are kept as they are.
    if (current) for (const [k, v] of Object.entries(current)) if (!(k in schema)) config[k] = v;
    for (const [key, spec] of Object.entries(schema)) {
      const el = form.querySelector(`#config-${CSS.escape(key)}`);
      if (!el) continue;
      const raw = el.value.trim();
      const name = `config.${key}`;
      if (raw === "") {
        if (spec.secret && current && current[key] !== undefined) config[key] = current[key];
        continue;
      }
      if (spec.type === "integer") {
        const n = Number(raw);
        if (!Number.isInteger(n)) throw new LocalError(name, "Enter a whole number.");
        config[key] = n;
      } else if (spec.type === "boolean") config[key] = raw === "true";
      else if (spec.type === "string-list") config[key] = splitList(raw);
      else if (spec.type === "string-map") config[key] = parseMap(el.value, name);
      else config[key] = el.value;
    }
    return config;
  }

  // ------------------------------------------------------------------ plugins

  async function pagePlugins(ctx, root) {
    if (!can("plugins.read")) return denied(ctx, root, "plugins.read");
    const wait = loading(root);
    const data = await ctx.get("/plugins");
    if (!ctx.alive()) return;
    wait.remove();
    const kib = (n) => `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KiB`;
    const hosts = (list) => (list && list.length ? list.join(", ") : "none");
    const rows = data.plugins.map((p) => h("tr", { data: { name: p.name } },
      h("th", { scope: "row", class: "plugin-name" }, h("span", { class: "strong" }, p.name),
        p.description ? h("details", { class: "small" }, h("summary", null, "About"), h("p", null, p.description)) : null),
      h("td", { class: "nowrap" }, p.kind),
      h("td", null, p.version, h("br"), h("span", { class: "small muted" }, `contract ${p.contract}`)),
      h("td", null, shortHash(p.sha256), h("br"), h("span", { class: "small muted" }, kib(p.size_bytes))),
      h("td", null, h("span", { class: "small" }, "asks: ", hosts(p.requested_hosts)), h("br"),
        h("span", { class: "small" }, "granted: ", hosts(p.granted_hosts)),
        p.allow_private_networks ? h("span", { class: "small" }, h("br"), "private networks allowed") : null),
      h("td", { data: { field: "status" } }, badge(p.status, `plugin-${p.status}`)),
      h("td", { class: "num" }, `${p.calls} / ${p.failures}`),
      h("td", null, p.last_error
        ? h("div", { class: "small" }, h("strong", null, `${p.last_error.op}: ${p.last_error.outcome}`), h("br"), p.last_error.message, h("br"), timeEl(p.last_error.at, true))
        : h("span", { class: "muted" }, "—"))));
    const table = h("table", { id: "plugins-table", class: "table" },
      h("caption", { class: "vh" }, "Loaded plugins"),
      h("thead", null, h("tr", null, ["Plugin", "Kind", "Version", "SHA-256 / size", "Outbound hosts", "Status", "Calls / failures", "Last error"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", null, rows.length ? rows : emptyRow(8, "No plugin is loaded.")));
    const refusedRows = data.refused.map((r) => h("tr", null,
      h("th", { scope: "row" }, codeText(r.path)), h("td", null, r.error), h("td", null, timeEl(r.at))));
    const refused = h("table", { id: "refused-table", class: "table" },
      h("caption", { class: "vh" }, "Refused plugin files"),
      h("thead", null, h("tr", null, ["File", "Why it was refused", "When"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", null, refusedRows.length ? refusedRows : emptyRow(3, "None: every plugin file was loaded.")));
    root.append(
      h("p", { class: "intro" }, "WebAssembly plugins loaded from the plugin directories. Status and counts are since this server process started. ",
        `Pooling allocator: ${data.pooling ? "on" : "off"}.`),
      tableWrap(table, "Loaded plugins"),
      h("h2", null, "Refused files"),
      tableWrap(refused, "Refused plugin files"));
    ctx.ready();
  }

  // ------------------------------------------------------------------ jobs

  // Certificate names for ids (cached); unknown ones are fetched.
  async function certNames(ctx, ids) {
    const missing = [...new Set(ids.filter((x) => x && !state.certNames.has(x)))].slice(0, 50);
    await Promise.all(missing.map((cid) => ctx.get(`/certificates/${encodeURIComponent(cid)}`)
      .then((c) => state.certNames.set(c.id, c.name))
      .catch((e) => { if (isQuiet(e)) throw e; })));
  }

  function certLink(cid) {
    if (!cid) return h("span", { class: "muted" }, "—");
    return h("a", { href: `#/certificates/${encodeURIComponent(cid)}` }, state.certNames.get(cid) || `…${cid.slice(-8)}`);
  }

  async function pageJobs(ctx, root, params) {
    if (!can("jobs.read")) return denied(ctx, root, "jobs.read");
    const f = { status: params.get("status") || "", type: params.get("type") || "", certificate_id: params.get("certificate_id") || "" };
    const statusSel = h("select", { id: "filter-job-status", value: f.status }, option("", "All states"), JOB_STATES.map((s) => option(s, s.replace("_", " "))));
    const typeSel = h("select", { id: "filter-job-type", value: f.type }, option("", "All kinds"), JOB_KINDS.map((s) => option(s, s)));
    const certInput = h("input", { id: "filter-job-certificate", type: "text", value: f.certificate_id, autocomplete: "off", placeholder: "certificate ID" });
    const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter jobs", novalidate: true },
      field("State", statusSel), field("Kind", typeSel), field("Certificate ID", certInput),
      h("div", { class: "field field-end" }, button("Refresh", { onclick: () => run(load) })));
    filters.addEventListener("submit", (ev) => { ev.preventDefault(); apply(); });
    const apply = () => {
      f.status = statusSel.value; f.type = typeSel.value; f.certificate_id = certInput.value.trim();
      pages.reset();
      setHashQuery("jobs", f);
      run(load);
    };
    statusSel.addEventListener("change", apply);
    typeSel.addEventListener("change", apply);
    certInput.addEventListener("change", apply);

    const writable = can("jobs.write");
    const head = ["Job", "State", "Certificate", "Attempts", "Result", "Created", "Updated", writable ? "Actions" : null].filter(Boolean);
    const tbody = h("tbody");
    const table = h("table", { id: "jobs-table", class: "table" },
      h("caption", { class: "vh" }, "Jobs, newest first"),
      h("thead", null, h("tr", null, head.map((t) => h("th", { scope: "col" }, t)))), tbody);
    const pages = pager(() => run(load));

    async function act(job, what) {
      const done = await post(`/jobs/${encodeURIComponent(job.id)}/${what}`);
      toast(`Job ${what === "cancel" ? "cancelled" : what === "retry" ? "queued again" : "approved"}: now ${done.state.replace("_", " ")}.`);
      await load();
    }

    let seq = 0;
    async function load() {
      const mine = ++seq;
      ctx.busy();
      const data = await ctx.get(`/jobs${qs({ status: f.status, type: f.type, certificate_id: f.certificate_id, limit: 50, cursor: pages.cursor() })}`);
      if (mine !== seq || !ctx.alive()) return;
      await certNames(ctx, data.items.map((j) => j.certificate_id));
      if (mine !== seq || !ctx.alive()) return;
      clearPageErrors();
      tbody.replaceChildren();
      for (const j of data.items) {
        const cells = [
          h("th", { scope: "row" }, j.kind, h("br"), shortId(j.id)),
          h("td", { data: { field: "state" } }, jobStateBadge(j.state)),
          h("td", null, certLink(j.certificate_id)),
          h("td", { class: "num" }, `${j.attempts}/${j.max_attempts}`),
          h("td", { class: "col-wide" }, jobResult(j)),
          h("td", null, timeEl(j.created_at)),
          h("td", null, timeEl(j.updated_at), j.state === "pending" && parseTime(j.run_after) > new Date()
            ? h("span", { class: "small muted" }, h("br"), "runs ", timeEl(j.run_after, true)) : null),
        ];
        if (writable) {
          const acts = h("div", { class: "row-actions" });
          if (j.state === "awaiting_approval") acts.append(button("Approve", { class: "btn btn-small btn-primary", "aria-label": `Approve job ${j.id}`, onclick: () => act(j, "approve") }));
          if (UNFINISHED.has(j.state)) {
            acts.append(button("Cancel", {
              class: "btn btn-small btn-quiet-danger", "aria-label": `Cancel job ${j.id}`,
              onclick: async () => {
                const ok = await confirmDialog({ title: "Cancel this job?", message: `The ${j.kind} job stops and is not retried.`, confirm: "Cancel job", danger: true });
                if (ok) await act(j, "cancel");
              },
            }));
          }
          if (j.state === "failed" || j.state === "cancelled") acts.append(button("Retry", { class: "btn btn-small", "aria-label": `Retry job ${j.id}`, onclick: () => act(j, "retry") }));
          cells.push(h("td", null, acts));
        }
        tbody.append(h("tr", { data: { id: j.id } }, cells));
      }
      if (!data.items.length) tbody.append(emptyRow(head.length, "No job matches."));
      pages.update(data.next_cursor);
      ctx.ready();
    }

    root.append(h("p", { class: "intro" }, "Background work: issuances, renewals, revocations, deployments and notifications, newest first."),
      filters, tableWrap(table, "Jobs"), pages.el);
    await load();
  }

  // ------------------------------------------------------------------ agents

  async function pageAgents(ctx, root) {
    if (!can("certificates.read")) return denied(ctx, root, "certificates.read");
    const writable = can("certificates.write");
    const head = ["Agent", "State", "Last heartbeat", "Version", "OS / arch", "IP addresses", "Registered", writable ? "Actions" : null].filter(Boolean);
    const tbody = h("tbody");
    const table = h("table", { id: "agents-table", class: "table" },
      h("caption", { class: "vh" }, "Agents"),
      h("thead", null, h("tr", null, head.map((t) => h("th", { scope: "col" }, t)))), tbody);

    async function load() {
      ctx.busy();
      const agents = await ctx.get("/agents");
      if (!ctx.alive()) return;
      tbody.replaceChildren();
      for (const a of agents) {
        const st = a.retired_at ? "retired" : a.online ? "online" : "offline";
        const cells = [
          h("th", { scope: "row" }, h("span", { class: "strong" }, a.name), a.hostname && a.hostname !== a.name ? h("span", { class: "small muted" }, h("br"), a.hostname) : null),
          h("td", { data: { field: "state" } }, badge(st, `agent-${st}`), a.retired_at ? h("span", { class: "small muted" }, h("br"), timeEl(a.retired_at)) : null),
          h("td", null, a.last_heartbeat ? timeEl(a.last_heartbeat, true) : h("span", { class: "muted" }, "never")),
          h("td", null, a.version || "—"),
          h("td", null, [a.os, a.arch].filter(Boolean).join(" / ") || "—"),
          h("td", null, a.ips && a.ips.length ? h("ul", { class: "plain small" }, a.ips.map((ip) => h("li", null, codeText(ip)))) : "—"),
          h("td", null, timeEl(a.created_at), a.credential_rotated_at ? h("span", { class: "small muted" }, h("br"), "credential ", timeEl(a.credential_rotated_at)) : null),
        ];
        if (writable) {
          cells.push(h("td", null, a.retired_at ? h("span", { class: "muted" }, "—") : button("Retire", {
            class: "btn btn-small btn-quiet-danger", "aria-label": `Retire ${a.name}`,
            onclick: async () => {
              const ok = await confirmDialog({
                title: `Retire agent ${a.name}?`,
                message: "Its credential stops working and the agent exits; its certificates lose their agent and deployment. This cannot be undone (the node can register again under another name).",
                confirm: "Retire agent",
                danger: true,
              });
              if (!ok) return;
              await post(`/agents/${encodeURIComponent(a.id)}/retire`);
              toast(`Agent ${a.name} retired.`);
              await load();
            },
          })));
        }
        tbody.append(h("tr", { data: { id: a.id, name: a.name } }, cells));
      }
      if (!agents.length) tbody.append(emptyRow(head.length, "No agent has registered. Install certctl-agent on a node with the bootstrap token (see the agents guide)."));
      ctx.ready();
    }

    root.append(h("p", { class: "intro" }, "Agents run on your nodes: they generate keys, deploy certificates and report what they find. Online means a heartbeat within the last 5 minutes."),
      tableWrap(table, "Agents"));
    await load();
  }

  // ------------------------------------------------------------------ discoveries

  async function pageDiscoveries(ctx, root, params) {
    if (!can("certificates.read")) return denied(ctx, root, "certificates.read");
    let filter = params.has("state") ? params.get("state") : "new";
    if (filter === "all") filter = "";
    const stateSel = h("select", { id: "filter-discovery-state", value: filter },
      option("new", "New"), option("claimed", "Claimed"), option("dismissed", "Dismissed"), option("", "All"));
    stateSel.addEventListener("change", () => {
      filter = stateSel.value;
      setHashQuery("discoveries", { state: filter === "new" ? "" : filter || "all" });
      run(load);
    });
    const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter discoveries", novalidate: true }, field("State", stateSel));
    filters.addEventListener("submit", (ev) => ev.preventDefault());
    const writable = can("certificates.write");
    const head = ["Subject", "Names", "Found on", "Valid until", "Serial / SHA-256", "State", writable ? "Actions" : null].filter(Boolean);
    const tbody = h("tbody");
    const table = h("table", { id: "discoveries-table", class: "table" },
      h("caption", { class: "vh" }, "Discovered certificates"),
      h("thead", null, h("tr", null, head.map((t) => h("th", { scope: "col" }, t)))), tbody);

    async function load() {
      ctx.busy();
      const list = await ctx.get(`/discoveries${qs({ state: filter })}`);
      if (!ctx.alive()) return;
      await certNames(ctx, list.map((d) => d.certificate_id));
      if (!ctx.alive()) return;
      tbody.replaceChildren();
      for (const d of list) {
        const expired = parseTime(d.not_after) < new Date();
        const cells = [
          h("th", { scope: "row" }, d.subject || "(empty subject)", d.is_ca ? h("span", null, " ", badge("CA", "muted")) : null,
            h("span", { class: "small muted" }, h("br"), `issued by ${d.issuer}`)),
          h("td", null, d.sans.length ? h("ul", { class: "plain small" }, d.sans.slice(0, 5).map((s) => h("li", null, s)), d.sans.length > 5 ? h("li", { class: "muted" }, `+${d.sans.length - 5} more`) : null) : "—"),
          h("td", null, d.agent_name, h("br"), h("code", { class: "mono small" }, d.index_in_file ? `${d.path} #${d.index_in_file}` : d.path),
            h("span", { class: "small muted" }, h("br"), "seen ", timeEl(d.first_seen), d.last_seen !== d.first_seen ? [" to ", timeEl(d.last_seen)] : null)),
          h("td", null, timeEl(d.not_after, true), expired ? h("span", null, " ", badge("expired", "status-expired")) : null),
          h("td", null, h("code", { class: "mono small" }, short(d.serial, 16)), h("br"), shortHash(d.fingerprint_sha256)),
          h("td", { data: { field: "state" } }, badge(d.state, `disc-${d.state}`), d.certificate_id ? h("span", { class: "small" }, h("br"), "as ", certLink(d.certificate_id)) : null),
        ];
        if (writable) {
          const acts = h("div", { class: "row-actions" });
          if (d.state !== "claimed") acts.append(button("Claim…", { class: "btn btn-small", "aria-label": `Claim ${d.subject}`, onclick: () => openClaim(d) }));
          if (d.state === "new") {
            acts.append(button("Dismiss", {
              class: "btn btn-small btn-quiet", "aria-label": `Dismiss ${d.subject}`,
              onclick: async () => {
                await post(`/discoveries/${encodeURIComponent(d.id)}/dismiss`);
                toast("Discovery dismissed.");
                await load();
              },
            }));
          }
          cells.push(h("td", null, acts));
        }
        tbody.append(h("tr", { data: { id: d.id } }, cells));
      }
      if (!list.length) tbody.append(emptyRow(head.length, filter === "new" ? "Nothing new: agents have reported no unmanaged certificate." : "None."));
      ctx.ready();
    }

    function openClaim(d) {
      openDialog({
        id: "claim-dialog",
        title: "Claim a discovered certificate",
        build: (close) => {
          const guess = d.sans[0] || (/CN=([^,]+)/.exec(d.subject) || [])[1] || "";
          const search = h("input", { id: "claim-search", type: "search", autocomplete: "off", value: guess });
          const sel = h("select", { id: "claim-certificate", required: true, size: "6", data: { apiField: "certificate_id" } });
          const note = h("p", { class: "help", id: "claim-certificate-help", "aria-live": "polite" });
          sel.setAttribute("aria-describedby", "claim-certificate-help");
          let seq = 0;
          const find = async () => {
            const mine = ++seq;
            const page = await ctx.get(`/certificates${qs({ q: search.value.trim(), limit: 25, sort: "name" })}`);
            if (mine !== seq) return;
            sel.replaceChildren(...page.items.map((c) => option(c.id, `${c.name} (${c.common_name})`)));
            if (page.items.length) sel.selectedIndex = 0;
            note.textContent = page.items.length
              ? `${plural(page.items.length, "match", "matches")}${page.next_cursor ? " (first 25)" : ""}.`
              : "No managed certificate matches. Declare one on the Certificates page first.";
          };
          search.addEventListener("input", debounce(find, 250));
          run(find);
          return apiForm({ id: "claim-form" }, [
            h("p", null, "Found on ", h("strong", null, d.agent_name), " at ", codeText(d.path), `: ${d.subject}.`),
            field("Find a managed certificate by name", search),
            h("div", { class: "field" }, h("label", { for: "claim-certificate" }, "Managed certificate"), sel, note),
            h("div", { class: "form-actions" },
              button("Cancel", { onclick: close }),
              h("button", { id: "claim-submit", type: "submit", class: "btn btn-primary" }, "Claim")),
          ], async () => {
            if (!sel.value) throw new LocalError("certificate_id", "Choose a managed certificate.");
            await post(`/discoveries/${encodeURIComponent(d.id)}/claim`, { certificate_id: sel.value });
            close();
            toast("Discovery claimed.");
            await load();
          });
        },
      });
    }

    root.append(h("p", { class: "intro" }, "Certificates agents found on their nodes that certctl does not manage yet. Claim one to link it to a managed certificate, or dismiss it."),
      filters, tableWrap(table, "Discovered certificates"));
    await load();
  }

  // ------------------------------------------------------------------ audit

  async function pageAudit(ctx, root, params) {
    if (!can("audit.read")) return denied(ctx, root, "audit.read");
    const f = { actor: params.get("actor") || "", action: params.get("action") || "", target_type: params.get("target_type") || "", target_id: params.get("target_id") || "" };
    const actor = h("input", { id: "filter-actor", type: "text", value: f.actor, autocomplete: "off", placeholder: "key name" });
    const action = h("input", { id: "filter-action", type: "text", value: f.action, autocomplete: "off", placeholder: "e.g. certificate.create" });
    const targetType = h("input", { id: "filter-target-type", type: "text", value: f.target_type, autocomplete: "off", placeholder: "e.g. certificate" });
    const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter the audit trail", novalidate: true },
      field("Actor", actor), field("Action", action), field("Target type", targetType),
      h("div", { class: "field field-end" }, h("button", { type: "submit", class: "btn" }, "Apply")));
    const apply = () => {
      f.actor = actor.value.trim(); f.action = action.value.trim(); f.target_type = targetType.value.trim();
      pages.reset();
      setHashQuery("audit", f);
      run(load);
    };
    filters.addEventListener("submit", (ev) => { ev.preventDefault(); apply(); });
    for (const el of [actor, action, targetType]) el.addEventListener("change", apply);
    const tbody = h("tbody");
    const table = h("table", { id: "audit-table", class: "table" },
      h("caption", { class: "vh" }, "Audit events, newest first"),
      h("thead", null, h("tr", null, ["Time", "Actor", "Action", "Target type", "Target ID", "Detail"].map((t) => h("th", { scope: "col" }, t)))), tbody);
    const pages = pager(() => run(load));

    let seq = 0;
    async function load() {
      const mine = ++seq;
      ctx.busy();
      const data = await ctx.get(`/audit${qs(Object.assign({}, f, { limit: 50, cursor: pages.cursor() }))}`);
      if (mine !== seq || !ctx.alive()) return;
      tbody.replaceChildren();
      for (const e of data.items) {
        const entries = e.detail && typeof e.detail === "object" && !Array.isArray(e.detail) ? Object.entries(e.detail) : [];
        const detail = entries.length
          ? h("ul", { class: "plain small detail" }, entries.map(([k, v]) => {
            const text = typeof v === "string" ? v : JSON.stringify(v);
            return h("li", { title: text.length > 80 ? text : null }, h("span", { class: "muted" }, `${k}: `), short(text, 80));
          }))
          : h("span", { class: "muted" }, "—");
        const target = e.target_type === "certificate" && e.target_id
          ? h("a", { href: `#/certificates/${encodeURIComponent(e.target_id)}`, title: e.target_id }, state.certNames.get(e.target_id) || `…${e.target_id.slice(-8)}`)
          : shortId(e.target_id);
        tbody.append(h("tr", { data: { id: e.id } },
          h("td", null, timeEl(e.at)),
          h("td", null, e.actor),
          h("th", { scope: "row" }, e.action),
          h("td", null, e.target_type),
          h("td", null, target),
          h("td", null, detail)));
      }
      if (!data.items.length) tbody.append(emptyRow(6, "No event matches."));
      pages.update(data.next_cursor);
      ctx.ready();
    }

    root.append(h("p", { class: "intro" }, "Everything that changed, who did it and when, newest first. The trail is append-only."),
      filters, tableWrap(table, "Audit events"), pages.el);
    await load();
  }

  // ------------------------------------------------------------------ notifications

  async function pageNotifications(ctx, root, params) {
    if (!can("jobs.read")) return denied(ctx, root, "jobs.read");
    let status = params.get("status") || "";
    const notifiers = can("plugins.read") ? await getAll(ctx, "/notifiers") : [];
    if (!ctx.alive()) return;
    const notifierName = new Map(notifiers.map((n) => [n.id, n.name]));
    const statusSel = h("select", { id: "filter-notification-status", value: status },
      option("", "All"), NOTIFICATION_STATES.map(([v, l]) => option(v, l)));
    const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter notifications", novalidate: true }, field("State", statusSel));
    filters.addEventListener("submit", (ev) => ev.preventDefault());
    statusSel.addEventListener("change", () => {
      status = statusSel.value;
      pages.reset();
      setHashQuery("notifications", { status });
      run(load);
    });
    const writable = can("jobs.write");
    const head = ["Event", "State", "Summary", "Notifier", "Attempts", "Last error", "Created", writable ? "Actions" : null].filter(Boolean);
    const tbody = h("tbody");
    const table = h("table", { id: "notifications-table", class: "table" },
      h("caption", { class: "vh" }, "Notifications, newest first"),
      h("thead", null, h("tr", null, head.map((t) => h("th", { scope: "col" }, t)))), tbody);
    const pages = pager(() => run(load));

    let seq = 0;
    async function load() {
      const mine = ++seq;
      ctx.busy();
      const data = await ctx.get(`/notifications${qs({ status, limit: 50, cursor: pages.cursor() })}`);
      if (mine !== seq || !ctx.alive()) return;
      await certNames(ctx, data.items.map((n) => n.certificate_id));
      if (mine !== seq || !ctx.alive()) return;
      tbody.replaceChildren();
      for (const n of data.items) {
        const cells = [
          h("th", { scope: "row" }, n.event, h("br"), badge(n.severity, `sev-${n.severity}`)),
          h("td", { data: { field: "state" } }, badge(n.state.replace("_", " "), `note-${n.state}`),
            n.next_attempt_at && (n.state === "pending" || n.state === "retrying") ? h("span", { class: "small muted" }, h("br"), "next ", timeEl(n.next_attempt_at, true)) : null),
          h("td", { class: "col-wide" }, n.summary, h("br"), h("span", { class: "small muted" }, n.subject),
            n.certificate_id ? h("span", { class: "small" }, " · ", certLink(n.certificate_id)) : null),
          h("td", null, notifierName.get(n.notifier_id) || shortId(n.notifier_id),
            n.channel ? h("span", { class: "small muted" }, h("br"), n.channel) : null),
          h("td", { class: "num" }, `${n.attempts}/${n.max_attempts}`),
          h("td", null, n.last_error ? h("span", { class: "error-text small" }, n.last_error) : h("span", { class: "muted" }, "—")),
          h("td", null, timeEl(n.created_at)),
        ];
        if (writable) {
          cells.push(h("td", null, n.state === "dead_letter" || n.state === "cancelled" ? button("Retry", {
            class: "btn btn-small", "aria-label": `Retry notification ${n.summary}`,
            onclick: async () => {
              await post(`/jobs/${encodeURIComponent(n.id)}/retry`);
              toast("Notification queued again.");
              await load();
            },
          }) : h("span", { class: "muted" }, "—")));
        }
        tbody.append(h("tr", { data: { id: n.id } }, cells));
      }
      if (!data.items.length) tbody.append(emptyRow(head.length, "No notification matches."));
      pages.update(data.next_cursor);
      ctx.ready();
    }

    root.append(h("p", { class: "intro" }, "Deliveries of events to notifiers, with their retries. Dead letters gave up after their last attempt and can be retried."),
      filters, tableWrap(table, "Notifications"), pages.el);
    if (can("plugins.read")) root.append(await routesSection(ctx, notifiers));
    if (!ctx.alive()) return;
    await load();
  }

  // Which events go to which notifier.
  async function routesSection(ctx, notifiers) {
    const writable = can("plugins.write");
    const section = h("section", { "aria-labelledby": "h-routes", class: "section" });
    const tbody = h("tbody");
    const head = ["Route", "Notifier", "Events", "Minimum severity", writable ? "Actions" : null].filter(Boolean);
    const table = h("table", { id: "routes-table", class: "table" },
      h("caption", { class: "vh" }, "Notification routes"),
      h("thead", null, h("tr", null, head.map((t) => h("th", { scope: "col" }, t)))), tbody);
    const notifierName = new Map(notifiers.map((n) => [n.id, n.name]));

    async function load() {
      const routes = await ctx.get("/notification-routes");
      if (!ctx.alive()) return;
      tbody.replaceChildren();
      for (const r of routes) {
        const cells = [
          h("th", { scope: "row" }, r.name),
          h("td", null, notifierName.get(r.notifier_id) || r.notifier_id),
          h("td", null, r.events.length ? r.events.join(", ") : "all events"),
          h("td", null, badge(r.min_severity, `sev-${r.min_severity}`)),
        ];
        if (writable) {
          cells.push(h("td", null, button("Delete", {
            class: "btn btn-small btn-quiet-danger", "aria-label": `Delete route ${r.name}`,
            onclick: async () => {
              const ok = await confirmDialog({ title: `Delete route ${r.name}?`, message: "Its events stop going to this notifier.", confirm: "Delete route", danger: true });
              if (!ok) return;
              await request("DELETE", `/notification-routes/${encodeURIComponent(r.id)}`);
              toast(`Route ${r.name} deleted.`);
              await load();
            },
          })));
        }
        tbody.append(h("tr", { data: { name: r.name, id: r.id } }, cells));
      }
      if (!routes.length) tbody.append(emptyRow(head.length, notifiers.length ? "No route: no event is sent anywhere." : "No route. Create a notifier first."));
    }

    function openRouteForm() {
      openDialog({
        id: "route-dialog",
        title: "New notification route",
        build: (close) => {
          const name = h("input", { id: "route-name", type: "text", required: true, autocomplete: "off", data: { apiField: "name" } });
          const notifier = h("select", { id: "route-notifier", required: true, data: { apiField: "notifier_id" } },
            option("", "Choose a notifier"), notifiers.map((n) => option(n.id, n.name)));
          const events = h("fieldset", { data: { apiField: "events" } }, h("legend", null, "Events (none checked: every event)"),
            h("div", { class: "checks" }, EVENT_KINDS.map((ev) => h("div", { class: "check" },
              h("input", { type: "checkbox", id: `route-event-${ev}`, name: "events", value: ev }),
              h("label", { for: `route-event-${ev}` }, ev.replace("_", " "))))));
          const severity = h("select", { id: "route-severity", data: { apiField: "min_severity" } }, SEVERITIES.map((s) => option(s, s)));
          return apiForm({ id: "route-form" }, [
            field("Name", name),
            field("Notifier", notifier),
            events,
            field("Minimum severity", severity, "Events below it are not sent."),
            h("div", { class: "form-actions" },
              button("Cancel", { onclick: close }),
              h("button", { id: "route-submit", type: "submit", class: "btn btn-primary" }, "Create route")),
          ], async (form) => {
            const chosen = [...form.querySelectorAll("input[name=events]:checked")].map((i) => i.value);
            await post("/notification-routes", { name: name.value.trim(), notifier_id: notifier.value, events: chosen, min_severity: severity.value });
            close();
            toast("Route created.");
            await load();
          });
        },
      });
    }

    section.append(h("h2", { id: "h-routes" }, "Routes"),
      h("p", { class: "intro" }, "Routes choose which events go to which notifier."));
    if (writable) section.append(h("div", { class: "toolbar" }, button("New route", { id: "new-route", class: "btn", disabled: !notifiers.length, onclick: openRouteForm })));
    section.append(tableWrap(table, "Notification routes"));
    await load();
    return section;
  }

  // ------------------------------------------------------------------ start

  const PAGE_RENDERERS = {
    overview: pageOverview,
    certificates: pageCertificates,
    issuers: (ctx, root) => pageInstances(ctx, root, "issuers"),
    "dns-solvers": (ctx, root) => pageInstances(ctx, root, "dns-solvers"),
    notifiers: (ctx, root) => pageInstances(ctx, root, "notifiers"),
    plugins: pagePlugins,
    jobs: pageJobs,
    agents: pageAgents,
    discoveries: pageDiscoveries,
    audit: pageAudit,
    notifications: pageNotifications,
  };

  function start() {
    const key = storedKey();
    if (!key) {
      renderSignIn(null);
      return;
    }
    const root = document.getElementById("app");
    root.replaceChildren(h("main", { class: "signin-wrap", id: "main" }, h("p", { class: "loading" }, "Signing in…")));
    signIn(key, null).catch((e) => {
      // A refused key is forgotten; an unreachable server keeps it for the next try.
      if (e instanceof LocalError) storeKey(null);
      renderSignIn(isQuiet(e) ? null : e.message);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
