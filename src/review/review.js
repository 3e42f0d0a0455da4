// Client-side filtering of the long tables: rows whose text does not contain every word typed
// are hidden. No request, no library.
(function () {
  "use strict";
  var inputs = document.querySelectorAll("input[data-filter]");
  Array.prototype.forEach.call(inputs, function (input) {
    var table = document.getElementById(input.getAttribute("data-filter"));
    var counter = document.getElementById(input.getAttribute("data-filter") + "-shown");
    var select = document.querySelector("select[data-filter-column='" + table.id + "']");
    function apply() {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      var wanted = select ? select.value : "";
      var shown = 0;
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var text = row.textContent.toLowerCase();
        var ok = words.every(function (w) { return text.indexOf(w) >= 0; });
        if (ok && wanted) { ok = row.getAttribute("data-outcome") === wanted; }
        row.style.display = ok ? "" : "none";
        if (ok) { shown += 1; }
      });
      if (counter) { counter.textContent = String(shown); }
    }
    input.addEventListener("input", apply);
    if (select) { select.addEventListener("change", apply); }
    apply();
  });
  document.body.setAttribute("data-script", "ran");
})();
