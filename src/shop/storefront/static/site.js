// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";

  // The order page follows its order live: the server sends the status panel each time it
  // changes (server-sent events), until the order is final.
  var panel = document.getElementById("order-status");
  if (panel && panel.dataset.events && window.EventSource) {
    var source = new EventSource(panel.dataset.events);
    source.addEventListener("status", function (event) {
      var update = JSON.parse(event.data);
      var details = document.getElementById("order-details");
      panel.innerHTML = update.html;
      if (details) {
        details.innerHTML = update.details;
      }
      if (update.status !== "pending") {
        source.close();
      }
    });
    source.addEventListener("signed-out", function () {
      source.close();
    });
  }

  // A form marked data-once is sent once: a second click does nothing (the server would place
  // no second order anyway, thanks to the form's idempotency key).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute("data-once")) {
      return;
    }
    if (form.dataset.sent) {
      event.preventDefault();
      return;
    }
    form.dataset.sent = "1";
    var button = form.querySelector("button[type=submit]");
    if (button) {
      button.setAttribute("aria-disabled", "true");
      button.textContent = "Placing your order…";
    }
  });
})();
