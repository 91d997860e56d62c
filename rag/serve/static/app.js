// The page behind `rag serve`: ask (streamed), read a cited span in its document, list documents, brief.
// Every string from the server goes in through textContent / text nodes, never as HTML: an article's text must
// not be able to run script here. The briefing's HTML goes only into a sandboxed frame without scripts.
// A module: deferred and strict, so the DOM is there when it runs.
import { answerParts, codePointSpan, sseParser } from "./text.js";

const TOKEN_KEY = "rag-cite-token";
const SITE = "rag-cite";
const $ = (id) => document.getElementById(id);

// ---- the API ---------------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

const retries = new Set(); // what to run again once a token is given

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(path, { method = "GET", body, accept = "application/json", signal, retry } = {}) {
  const headers = { Accept: accept, ...authHeaders() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(`the server cannot be reached (${e.message})`, 0);
  }
  if (response.ok) return response;
  const message = await errorMessage(response);
  if (response.status === 401) askForToken(message, retry);
  throw new ApiError(message, response.status);
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") return body.error;
    if (body && typeof body.detail === "string") return body.detail;
  } catch {
    // not JSON: fall back to the status line
  }
  return `${response.status} ${response.statusText || "error"}`;
}

function askForToken(message, retry) {
  if (retry) retries.add(retry);
  $("auth-message").textContent = sessionStorage.getItem(TOKEN_KEY)
    ? `The token was refused (${message}). Paste another one.`
    : `This server needs an access token (${message}).`;
  $("auth").hidden = false;
  $("token").focus();
}

function useToken(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  $("auth").hidden = true;
  const pending = [...retries];
  retries.clear();
  pending.forEach((run) => run());
}

function showError(id, error) {
  const box = $(id);
  box.textContent = error instanceof ApiError && error.status ? `Error ${error.status}: ${error.message}` : `Error: ${error.message}`;
  box.hidden = false;
}

function clearError(id) {
  $(id).hidden = true;
  $(id).textContent = "";
}

function setStatus(id, text, busy) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("busy", Boolean(busy));
}

// ---- asking ----------------------------------------------------------------------------------------------------

let asking = null; // the AbortController of the question in flight
let current = null; // the last answer object shown

function askOptions() {
  const options = {};
  const k = parseInt($("opt-k").value, 10);
  if (k > 0) options.k = k;
  if ($("opt-backend").value) options.backend = $("opt-backend").value;
  const docs = $("opt-docs").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (docs.length) options.docs = docs;
  return options;
}

function showQuestionInUrl(question, push) {
  const url = new URL(window.location.href);
  url.searchParams.set("q", question);
  url.hash = "";
  if (url.href === window.location.href) return;
  if (push) window.history.pushState({ q: question }, "", url);
  else window.history.replaceState({ q: question }, "", url);
}

async function ask(question, { push }) {
  if (asking) asking.abort();
  const controller = new AbortController();
  asking = controller;
  $("question").value = question;
  document.title = `${question} · ${SITE}`;
  showQuestionInUrl(question, push);
  clearError("ask-error");
  $("result").hidden = false;
  $("result").setAttribute("aria-busy", "true");
  $("result-question").textContent = question;
  $("answer").replaceChildren();
  $("answer").className = "answer streaming";
  $("answer-meta").textContent = "";
  $("sources").hidden = true;
  setStatus("ask-status", "Searching the articles…", true);
  const streamed = document.createTextNode("");
  $("answer").append(streamed);
  try {
    const response = await api("v1/ask", {
      method: "POST", accept: "text/event-stream", signal: controller.signal,
      body: { question, stream: true, ...askOptions() }, retry: () => ask(question, { push: false }),
    });
    setStatus("ask-status", "Reading…", true);
    const type = response.headers.get("content-type") || "";
    const answer = type.includes("text/event-stream")
      ? await readAnswerStream(response, (token) => streamed.appendData(token))
      : await response.json();
    if (asking !== controller) return;
    showAnswer(answer);
    setStatus("ask-status", "", false);
  } catch (e) {
    if (e.name === "AbortError" || asking !== controller) return;
    $("answer").className = "answer";
    setStatus("ask-status", "", false);
    showError("ask-error", e);
  } finally {
    if (asking === controller) {
      asking = null;
      $("result").removeAttribute("aria-busy");
    }
  }
}

async function readAnswerStream(response, onToken) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let answer = null;
  let failure = null;
  const parser = sseParser(({ event, data }) => {
    if (event === "token") onToken(JSON.parse(data));
    else if (event === "answer") answer = JSON.parse(data);
    else if (event === "error") failure = errorOfEvent(data);
  });
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parser.push(value);
  }
  parser.end();
  if (failure) throw failure;
  if (!answer) throw new ApiError("the answer stream ended without an answer", 0);
  return answer;
}

function errorOfEvent(data) {
  try {
    const body = JSON.parse(data);
    if (body && typeof body.error === "string") return new ApiError(body.error, Number(body.status) || 0);
  } catch {
    // a plain-text error event
  }
  return new ApiError(data, 0);
}

function showAnswer(answer) {
  current = answer;
  const citations = new Map((answer.citations || []).map((c) => [c.n, c]));
  const el = $("answer");
  el.className = answer.abstained ? "answer abstained" : "answer";
  el.replaceChildren();
  for (const part of answerParts(answer.answer || "", new Set(citations.keys()))) {
    el.append(typeof part === "number" ? markerButton(citations.get(part)) : part);
  }
  $("answer-meta").textContent = answerMeta(answer);
  const list = $("sources-list");
  list.replaceChildren(...[...citations.values()].map(sourceEntry));
  $("sources").hidden = citations.size === 0;
}

function answerMeta(answer) {
  const parts = [];
  if (answer.backend) {
    const reader = answer.reader && answer.reader !== answer.backend ? ` (${answer.reader} reader)` : "";
    parts.push(`${answer.backend} backend${reader}`);
  }
  const total = answer.timings_ms && answer.timings_ms.total;
  if (typeof total === "number") parts.push(`${(total / 1000).toFixed(1)} s`);
  const unsupported = (answer.unsupported_sentences || []).length;
  if (unsupported) parts.push(`${unsupported} sentence${unsupported > 1 ? "s" : ""} without support removed`);
  return parts.join(" · ");
}

function citationLabel(c) {
  return c.title ? `${c.title} (${c.doc})` : c.doc;
}

function markerButton(citation) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "marker";
  button.dataset.n = String(citation.n);
  button.textContent = `[${citation.n}]`;
  button.title = citation.quote;
  button.setAttribute("aria-label", `Source ${citation.n}: ${citationLabel(citation)}`);
  button.addEventListener("click", () => openDocument(citation.doc, citation, button));
  return button;
}

function sourceEntry(citation) {
  const item = document.createElement("li");
  item.value = citation.n;
  const open = document.createElement("button");
  open.type = "button";
  open.className = "source-open";
  open.dataset.n = String(citation.n);
  const title = document.createElement("span");
  title.className = "source-title";
  title.textContent = citation.title || citation.doc;
  const doc = document.createElement("span");
  doc.className = "source-doc";
  doc.textContent = citation.doc;
  open.append(title, " ", doc);
  open.addEventListener("click", () => openDocument(citation.doc, citation, open));
  const quote = document.createElement("q");
  quote.className = "source-quote";
  quote.textContent = citation.quote;
  item.append(open, quote);
  return item;
}

// ---- the document view ----------------------------------------------------------------------------------------

const documents = new Map(); // id -> Promise of the document object
let opener = null; // the control that opened the view gets focus back on close
let showing = 0; // which open request the view belongs to (a slow fetch must not overwrite a newer one)

function documentPath(id) {
  return `v1/documents/${id.split("/").map(encodeURIComponent).join("/")}`;
}

function fetchDocument(id) {
  if (!documents.has(id)) {
    const loading = api(documentPath(id), { retry: () => openDocument(id, null, null) }).then((r) => r.json());
    loading.catch(() => documents.delete(id));
    documents.set(id, loading);
  }
  return documents.get(id);
}

async function openDocument(id, citation, from) {
  const request = ++showing;
  const view = $("doc-view");
  opener = from || document.activeElement;
  $("doc-title").textContent = citation ? citation.title || id : id;
  $("doc-meta").textContent = "";
  $("doc-note").hidden = true;
  clearError("doc-error");
  $("doc-text").replaceChildren();
  $("doc-text").setAttribute("aria-busy", "true");
  $("doc-meta").textContent = "Loading…";
  if (!view.open) view.showModal();
  try {
    const doc = await fetchDocument(id);
    if (request !== showing) return;
    showDocument(doc, citation);
  } catch (e) {
    if (request !== showing) return;
    $("doc-meta").textContent = id;
    showError("doc-error", e);
  } finally {
    if (request === showing) $("doc-text").removeAttribute("aria-busy");
  }
}

function showDocument(doc, citation) {
  $("doc-title").textContent = doc.title || doc.id;
  $("doc-meta").textContent = [doc.id, doc.date].filter(Boolean).join(" · ");
  $("doc-meta").title = doc.source || "";
  const box = $("doc-text");
  box.scrollTop = 0;
  if (!citation) {
    box.textContent = doc.text;
    box.focus({ preventScroll: true });
    return;
  }
  const offset = doc.start || 0; // the text starts at this offset of the document
  const parts = codePointSpan(doc.text, citation.start - offset, citation.end - offset);
  if (!parts) {
    box.textContent = doc.text;
    note(`Citation [${citation.n}] points at [${citation.start}, ${citation.end}), outside this document's text.`);
    return;
  }
  const mark = document.createElement("mark");
  mark.id = "cited";
  mark.tabIndex = -1;
  mark.textContent = parts[1];
  box.append(parts[0], mark, parts[2]);
  if (parts[1] !== citation.quote) {
    note(`The stored text at [${citation.start}, ${citation.end}) is not the quoted passage: the document has`
      + " changed since the answer was made.");
  } else {
    note(`Source [${citation.n}], highlighted below.`);
  }
  mark.scrollIntoView({ block: "center", inline: "nearest" });
  mark.focus({ preventScroll: true });
}

function note(text) {
  $("doc-note").textContent = text;
  $("doc-note").hidden = false;
}

function closeDocument() {
  if ($("doc-view").open) $("doc-view").close();
}

function documentClosed() {
  showing++;
  if (opener && document.contains(opener)) opener.focus();
  opener = null;
}

// ---- the document list -----------------------------------------------------------------------------------------

async function loadDocuments() {
  clearError("docs-error");
  setStatus("docs-status", "Loading the documents…", true);
  try {
    const response = await api("v1/documents", { retry: loadDocuments });
    const body = await response.json();
    const list = Array.isArray(body) ? body : body.documents || [];
    $("docs-list").replaceChildren(...list.map(documentEntry));
    setStatus("docs-status", list.length ? `${list.length} document${list.length > 1 ? "s" : ""}` : "No documents yet: run rag ingest.", false);
  } catch (e) {
    setStatus("docs-status", "", false);
    showError("docs-error", e);
  }
}

function documentEntry(doc) {
  const item = document.createElement("li");
  const open = document.createElement("button");
  open.type = "button";
  open.className = "doc-open";
  const title = document.createElement("span");
  title.className = "doc-title";
  title.textContent = doc.title || doc.id;
  const meta = document.createElement("span");
  meta.className = "doc-meta";
  meta.textContent = [doc.id, doc.date].filter(Boolean).join(" · ");
  open.append(title, meta);
  open.addEventListener("click", () => openDocument(doc.id, null, open));
  item.append(open);
  return item;
}

// ---- the briefing ---------------------------------------------------------------------------------------------

const downloads = [];

async function brief(topic) {
  clearError("brief-error");
  setStatus("brief-status", "Writing the briefing… (this reads every article on the topic)", true);
  $("brief-button").disabled = true;
  try {
    const response = await api("v1/brief", { method: "POST", body: { topic }, retry: () => brief(topic) });
    showBriefing(await response.json());
    setStatus("brief-status", "", false);
  } catch (e) {
    setStatus("brief-status", "", false);
    showError("brief-error", e);
  } finally {
    $("brief-button").disabled = false;
  }
}

function showBriefing(briefing) {
  // srcdoc in a frame sandboxed without allow-scripts and allow-same-origin: it renders, it cannot run anything
  $("brief-frame").srcdoc = briefing.html || "";
  $("brief-frame").title = `Briefing: ${briefing.topic || ""}`;
  downloads.splice(0).forEach((url) => URL.revokeObjectURL(url));
  for (const [id, text, type] of [["brief-html-link", briefing.html, "text/html"],
    ["brief-md-link", briefing.markdown, "text/markdown"]]) {
    const url = URL.createObjectURL(new Blob([text || ""], { type: `${type};charset=utf-8` }));
    downloads.push(url);
    $(id).href = url;
  }
  $("brief-result").hidden = false;
}

// ---- wiring ----------------------------------------------------------------------------------------------------

function questionInUrl() {
  return (new URLSearchParams(window.location.search).get("q") || "").trim();
}

function showUrlQuestion() {
  const question = questionInUrl();
  if (question) {
    ask(question, { push: false });
    return;
  }
  if (asking) asking.abort();
  asking = null;
  current = null;
  $("result").hidden = true;
  $("question").value = "";
  setStatus("ask-status", "", false);
  clearError("ask-error");
  document.title = `${SITE}: cited answers from your articles`;
}

function start() {
  $("ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const question = $("question").value.trim();
    if (question) ask(question, { push: true });
  });
  $("brief-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const topic = $("topic").value.trim();
    if (topic) brief(topic);
  });
  $("auth-form").addEventListener("submit", useToken);
  $("doc-close").addEventListener("click", closeDocument);
  const view = $("doc-view");
  view.addEventListener("close", documentClosed);
  // a click on the dialog element itself (not its content) is a click on the backdrop
  view.addEventListener("click", (event) => {
    if (event.target === view) closeDocument();
  });
  window.addEventListener("popstate", showUrlQuestion);
  loadDocuments();
  if (questionInUrl()) showUrlQuestion();
  else $("question").focus();
}

window.RagPage = { codePointSpan, sseParser, answerParts, current: () => current };
start();
