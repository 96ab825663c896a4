// The browsable API page at /docs: renders the server's own generated /openapi.json (operations
// grouped by tag, parameters, request and response schemas) and lets the user try an operation.
// Plain JavaScript, no build step, no inline code (the Content-Security-Policy forbids it). The
// token is the console's: kept in sessionStorage (this tab only), sent as
// `Authorization: Bearer`, never put in a URL.
"use strict";

const TOKEN_KEY = "update-server-console-token";
const METHODS = ["get", "put", "post", "delete", "patch", "head", "options"];
let documentRoot = null;

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

// `#/components/schemas/Name` -> the schema, or null.
function resolve(ref) {
  if (!ref.startsWith("#/")) return null;
  let node = documentRoot;
  for (const part of ref.slice(2).split("/")) {
    node = node ? node[part] : null;
  }
  return node || null;
}

function refName(ref) {
  return ref.split("/").pop();
}

// A schema as indented text: objects with their fields, `?` for optional ones, arrays as
// `[item]`, references expanded once per path (a cycle prints the name only).
function schemaText(schema, indent, seen) {
  if (!schema) return "any";
  if (schema.$ref) {
    const name = refName(schema.$ref);
    if (seen.includes(name)) return name;
    const target = resolve(schema.$ref);
    return target ? name + " " + schemaText(target, indent, seen.concat([name])) : name;
  }
  for (const key of ["oneOf", "anyOf", "allOf"]) {
    if (Array.isArray(schema[key])) {
      const parts = schema[key].map((s) => schemaText(s, indent, seen));
      return parts.join(key === "allOf" ? " & " : " | ");
    }
  }
  const types = Array.isArray(schema.type) ? schema.type : [schema.type || (schema.properties ? "object" : "any")];
  const nullable = types.includes("null");
  const type = types.filter((t) => t !== "null")[0] || "null";
  let text;
  if (type === "object" && schema.properties) {
    const required = schema.required || [];
    const pad = "  ".repeat(indent + 1);
    const lines = Object.entries(schema.properties).map(([name, property]) => {
      const optional = required.includes(name) ? "" : "?";
      const note = property.description ? "  // " + property.description.split("\n")[0] : "";
      return pad + name + optional + ": " + schemaText(property, indent + 1, seen) + note;
    });
    text = "{\n" + lines.join("\n") + "\n" + "  ".repeat(indent) + "}";
  } else if (type === "array") {
    text = "[" + schemaText(schema.items, indent, seen) + "]";
  } else {
    text = type + (schema.format ? " (" + schema.format + ")" : "");
    if (schema.enum) text += " one of " + schema.enum.join(", ");
  }
  return nullable ? text + " | null" : text;
}

function contentSchemas(content) {
  return Object.entries(content || {}).map(([type, media]) => el("div", {},
    el("span", { class: "hint" }, type),
    el("pre", {}, schemaText(media.schema, 0, []))));
}

function operationSecurity(operation) {
  const security = operation.security || documentRoot.security || [];
  const names = security.flatMap((requirement) => Object.keys(requirement));
  return names.length ? names.join(" or ") : "none";
}

function parametersTable(parameters) {
  if (!parameters.length) return null;
  return el("table", { class: "params" },
    el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "required"), el("th", {}, "description")),
    ...parameters.map((p) => el("tr", {},
      el("td", {}, p.name), el("td", {}, p.in), el("td", {}, schemaText(p.schema, 0, [])),
      el("td", {}, p.required ? "yes" : "no"), el("td", {}, p.description || ""))));
}

function responsesList(responses) {
  const list = el("div", { class: "responses" });
  for (const [status, response] of Object.entries(responses || {})) {
    const resolved = response.$ref ? resolve(response.$ref) || {} : response;
    list.append(el("div", { class: "response", "data-status": status },
      el("strong", {}, status + " "), resolved.description || "",
      ...contentSchemas(resolved.content)));
  }
  return list;
}

// The "Try it" form of one operation: a field per parameter, a body for POST/PUT, Send.
function tryForm(method, path, operation) {
  const form = el("form", { class: "try" });
  const parameters = operation.parameters || [];
  for (const p of parameters) {
    const id = "p-" + Math.random().toString(36).slice(2);
    form.append(el("label", { for: id }, p.name + " (" + p.in + ")"),
      el("input", { type: "text", id: id, "data-name": p.name, "data-in": p.in }));
  }
  const bodyTypes = Object.keys((operation.requestBody || {}).content || {});
  if (bodyTypes.length) {
    form.append(el("textarea", { class: "body", "data-type": bodyTypes[0], placeholder: bodyTypes[0] + " body" }));
  }
  const result = el("pre", { class: "result", hidden: "" });
  form.append(el("button", { type: "submit", class: "send" }, "Send " + method.toUpperCase()));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let url = path;
    const query = new URLSearchParams();
    const headers = {};
    for (const input of form.querySelectorAll("input[data-name]")) {
      const value = input.value;
      const name = input.dataset.name;
      if (input.dataset.in === "path") url = url.replace("{" + name + "}", encodeURIComponent(value));
      else if (value === "") continue;
      else if (input.dataset.in === "query") query.append(name, value);
      else if (input.dataset.in === "header") headers[name] = value;
    }
    if ([...query.keys()].length) url += "?" + query.toString();
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method: method.toUpperCase(), headers: headers };
    const body = form.querySelector("textarea.body");
    if (body) {
      headers["Content-Type"] = body.dataset.type;
      init.body = body.value;
    }
    result.hidden = false;
    result.textContent = init.method + " " + url + " …";
    try {
      const response = await fetch(url, init);
      const text = await response.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON */ }
      result.dataset.status = String(response.status);
      result.textContent = response.status + " " + response.statusText + "\n" + shown.slice(0, 20000);
    } catch (error) {
      result.dataset.status = "error";
      result.textContent = "request failed: " + error;
    }
  });
  return el("div", {}, el("h4", {}, "Try it"), form, result);
}

function operationView(method, path, operation) {
  const body = el("div", { class: "body" },
    operation.description ? el("p", {}, operation.description) : null,
    el("p", { class: "hint" }, "Token: " + operationSecurity(operation)));
  const parameters = operation.parameters || [];
  if (parameters.length) body.append(el("h4", {}, "Parameters"), parametersTable(parameters));
  if (operation.requestBody) {
    body.append(el("h4", {}, "Request body"),
      operation.requestBody.description ? el("p", {}, operation.requestBody.description) : null,
      ...contentSchemas(operation.requestBody.content));
  }
  body.append(el("h4", {}, "Responses"), responsesList(operation.responses), tryForm(method, path, operation));
  return el("details", { class: "op", "data-method": method, "data-path": path },
    el("summary", {},
      el("span", { class: "method " + method }, method),
      el("code", { class: "path" }, path),
      el("span", { class: "summary" }, operation.summary || "")),
    body);
}

function render(doc) {
  documentRoot = doc;
  document.getElementById("version").textContent = "v" + ((doc.info || {}).version || "?");
  const byTag = new Map((doc.tags || []).map((t) => [t.name, { tag: t, operations: [] }]));
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      const operation = item[method];
      if (!operation) continue;
      const name = (operation.tags || ["other"])[0];
      if (!byTag.has(name)) byTag.set(name, { tag: { name: name }, operations: [] });
      byTag.get(name).operations.push([method, path, operation]);
    }
  }
  const nav = document.getElementById("tags");
  const container = document.getElementById("operations");
  for (const { tag, operations } of byTag.values()) {
    if (!operations.length) continue;
    nav.append(el("a", { href: "#tag-" + tag.name }, tag.name + " (" + operations.length + ")"));
    container.append(el("section", { class: "tag", id: "tag-" + tag.name },
      el("h2", {}, tag.name),
      tag.description ? el("p", { class: "hint" }, tag.description) : null,
      ...operations.map(([method, path, operation]) => operationView(method, path, operation))));
  }
  document.getElementById("loading").hidden = true;
}

function showTokenState() {
  document.getElementById("token-state").textContent =
    sessionStorage.getItem(TOKEN_KEY) ? "a token is set for this tab" : "no token: protected operations answer 401";
}

document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token");
    if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value);
    input.value = "";
    showTokenState();
  });
  document.getElementById("token-clear").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showTokenState();
  });
  showTokenState();
  try {
    const response = await fetch("/openapi.json");
    if (!response.ok) throw new Error("/openapi.json answered " + response.status);
    render(await response.json());
  } catch (error) {
    const problem = document.getElementById("problem");
    problem.textContent = "Cannot show the API: " + error.message;
    problem.hidden = false;
    document.getElementById("loading").hidden = true;
  }
});
