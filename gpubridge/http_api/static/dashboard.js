// gpubridge dashboard: progressive enhancement only. Every page works without this script.
"use strict";

function enableCopyButtons() {
  for (const button of document.querySelectorAll("button.copy")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const source = button.dataset.copyFrom && document.getElementById(button.dataset.copyFrom);
      const text = source ? source.textContent : button.dataset.copy || "";
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch (error) {
        button.textContent = "Select and copy";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  }
}

function autosubmitPickers() {
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
}

// A running job's page follows the job's server-sent events (GET /status/{id}/stream):
// status changes and progress stages are shown as they come, LLM tokens as they are made;
// when the job ends the page reloads to show the result as the server renders it.
function followJob() {
  const card = document.getElementById("job");
  if (!card || card.dataset.terminal === "true" || !window.EventSource) return;
  const progress = document.getElementById("job-progress");
  const stream = document.getElementById("job-stream");
  const status = document.getElementById("job-status");
  const events = new EventSource("/status/" + encodeURIComponent(card.dataset.jobId) + "/stream");
  const terminal = new Set(["completed", "failed", "cancelled"]);
  events.addEventListener("status", (message) => {
    const job = JSON.parse(message.data);
    const badge = document.createElement("span");
    badge.className = "badge " + job.status;
    badge.textContent = job.status;
    status.replaceChildren(badge);
    if (terminal.has(job.status)) {
      events.close();
      window.location.reload();
    } else if (job.progress && job.progress.stage) {
      progress.textContent = job.progress.stage.replace(/_/g, " ") + "…";
    } else {
      progress.textContent = job.status + "…";
    }
  });
  events.addEventListener("progress", (message) => {
    const data = JSON.parse(message.data);
    const parts = [data.stage ? data.stage.replace(/_/g, " ") : "working"];
    if (data.step !== undefined && data.total_steps) parts.push(data.step + "/" + data.total_steps);
    if (data.percent !== undefined) parts.push(Math.round(data.percent) + "%");
    progress.textContent = parts.join(" ") + "…";
  });
  events.addEventListener("token", (message) => {
    stream.hidden = false;
    stream.textContent += JSON.parse(message.data).text || "";
  });
  events.onerror = () => {
    events.close();
    setTimeout(() => window.location.reload(), 2000);
  };
}

// The playground's curl follows the form as it is filled in (the server renders the
// example's); it is the job the form would run, as POST /run takes it.
function shellQuote(text) {
  return "'" + text.replace(/'/g, "'\"'\"'") + "'";
}

function formInput(form) {
  const input = {};
  const uploads = {};
  for (const field of form.elements) {
    if (!field.name || field.name === "csrf_token" || field.type === "hidden") continue;
    if (field.type === "file") {
      if (field.files.length) uploads[field.name.replace(/__file$/, "")] = field.files[0].name;
    } else if (field.type === "checkbox") {
      input[field.name] = field.checked;
    } else if (field.value.trim() !== "") {
      const value = field.tagName === "TEXTAREA" ? field.value : field.value.trim();
      if (field.type === "number" || "numeric" in field.dataset) {
        input[field.name] = Number(value);
      } else if (field.classList.contains("mono")) {
        try { input[field.name] = JSON.parse(value); } catch (error) { input[field.name] = value; }
      } else {
        input[field.name] = value;
      }
    }
  }
  for (const name of Object.keys(uploads)) input[name] = "@@" + name + "@@";
  return { input, uploads };
}

function liveCurl() {
  const form = document.getElementById("playground-form");
  const target = document.querySelector("#curl code");
  if (!form || !target) return;
  const update = () => {
    const { input, uploads } = formInput(form);
    let body = shellQuote(JSON.stringify({ service: form.dataset.service, input }, null, 1)
      .replace(/\n\s*/g, " "));
    for (const [name, file] of Object.entries(uploads)) {
      body = body.replace("@@" + name + "@@",
        "data:application/octet-stream;base64,'\"$(base64 -w0 " + shellQuote(file) + ")\"'");
    }
    target.textContent = "curl -X POST " + form.dataset.runUrl + " \\\n" +
      '  -H "Authorization: Bearer $GPUBRIDGE_API_KEY" \\\n' +
      '  -H "Content-Type: application/json" \\\n' +
      "  -d " + body;
  };
  form.addEventListener("input", update);
  form.addEventListener("change", update);
  update();
}

// One click runs once: the button waits for the answer (the server also runs a form's run id
// once), and is ready again when the page comes back from the browser's history.
function runOnce() {
  const form = document.getElementById("playground-form");
  const button = document.getElementById("run");
  if (!form || !button) return;
  form.addEventListener("submit", () => { button.disabled = true; });
  window.addEventListener("pageshow", () => { button.disabled = false; });
}

document.addEventListener("DOMContentLoaded", () => {
  enableCopyButtons();
  autosubmitPickers();
  followJob();
  liveCurl();
  runOnce();
});
