// Entry point: the token field, then the three panels, then the first model listing.

import { getToken, setToken, showError } from "./api.js";
import * as listen from "./listen.js";
import * as models from "./models.js";
import * as speak from "./speak.js";

const token = document.getElementById("token");
token.value = getToken();

function load() {
  showError("");
  return models.refresh().catch((exc) => showError(exc.message));
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setToken(token.value.trim());
  load();
});

models.setup();
speak.setup();
listen.setup();
document.body.dataset.ready = "true";
load();
