// The Lua console (POST /tools/execute-script): a script in, what it printed out. The route exists when the lua
// plugin is loaded and answers 403 unless ExecuteLuaEnabled is true, so an empty script (which does nothing)
// tells the page which of the two it is before anyone types.
import { api } from "../api.js";
import { hasPlugin } from "../capabilities.js";
import { h, replace } from "../dom.js";

async function enabled() {
  try {
    await api.postText("/tools/execute-script", "");
    return true;
  } catch (error) {
    if (error.status === 403) return false;
    throw error;
  }
}

export async function renderLua(main) {
  const header = h("header", { class: "page-header" }, h("h1", {}, "Lua console"));
  if (!(await hasPlugin("lua"))) {
    replace(main, header, h("p", { class: "card" }, "The lua plugin is not loaded on this server."));
    return;
  }
  if (!(await enabled())) {
    replace(main, header, h("p", { class: "card", id: "lua-disabled" },
      "Running Lua scripts over the REST API is disabled in the configuration: set \"ExecuteLuaEnabled\": true ",
      "to use this console (anyone who may call the API can then run code on the server)."));
    return;
  }
  const script = h("textarea", { class: "lua-script", id: "lua-script", rows: 12, spellcheck: "false",
    placeholder: "print(1 + 1)", "aria-label": "Lua script" });
  const out = h("pre", { class: "json lua-output", id: "lua-output" });
  const run = h("button", { class: "button primary", id: "lua-run" }, "Run");
  run.addEventListener("click", async () => {
    run.disabled = true;
    out.classList.remove("error");
    try {
      const text = await api.postText("/tools/execute-script", script.value);
      out.textContent = text || "(no output)";
    } catch (error) {
      out.classList.add("error");
      out.textContent = error.message;
    } finally {
      run.disabled = false;
    }
  });
  script.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) run.click();
  });
  replace(main, header,
    h("section", { class: "card" }, script, h("div", { class: "actions lua-actions" }, run,
      h("span", { class: "muted" }, "Ctrl+Enter runs the script; print() writes below.")), out));
}
