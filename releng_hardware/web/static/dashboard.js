// Filters apply as soon as they change; the URL stays the shareable /machines query.
(function () {
  "use strict";
  var form = document.getElementById("filters");
  if (!form) { return; }
  form.addEventListener("submit", function () {
    // An empty select would put `datacenter=` in the URL, which /machines refuses.
    Array.prototype.forEach.call(form.elements, function (field) {
      if (field.name && field.value === "" && field.type !== "checkbox") { field.disabled = true; }
    });
  });
  Array.prototype.forEach.call(form.querySelectorAll("select, input[type=checkbox]"), function (field) {
    field.addEventListener("change", function () {
      if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
    });
  });
  // Back/forward restores the fields as they were left (even disabled), which can
  // disagree with the URL: show the filters of the URL again.
  window.addEventListener("pageshow", function () {
    Array.prototype.forEach.call(form.elements, function (field) { field.disabled = false; });
    form.reset();
  });
  document.documentElement.classList.add("js");
})();
