// History page: the time-travel slider shows the event it points at while it moves
// and loads that point when released (the form's "Show" button does the same without
// a pointer).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const slider = document.getElementById("at");
  const shown = document.getElementById("at-shown");
  if (!slider || !shown) return;
  const update = () => {
    shown.textContent = `${slider.value} / ${slider.max}`;
    slider.setAttribute("aria-valuetext", `event ${slider.value} of ${slider.max}`);
  };
  slider.addEventListener("input", update);
  slider.addEventListener("change", () => slider.form.requestSubmit());
});
