/* Forms with data-confirm ask before they post (removing an exclusion rule).
 * The sentence comes from the page, already in the shop owner's language. */
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var sentence = form && form.getAttribute && form.getAttribute("data-confirm");
    if (sentence && !window.confirm(sentence)) { event.preventDefault(); }
  });
  // The page renders these forms' buttons disabled: this script is deferred, and a click
  // before it ran would post without asking.
  document.querySelectorAll("form[data-confirm] [type=submit]").forEach(function (button) {
    button.disabled = false;
  });
}());
