// The console's few behaviours: the photo viewer (zoom, rotate), "select all", reason templates.
(function () {
  "use strict";
  var viewer = document.getElementById("viewer");
  if (viewer) {
    var img = document.getElementById("viewer-img");
    var scale = 1, angle = 0;
    // Zoom changes the picture's real size (so the stage scrolls to any part of it); rotation turns it.
    var apply = function () {
      var stage = viewer.querySelector(".viewer-stage");
      var fit = Math.min(img.naturalWidth || 800, stage.clientWidth * 0.92,
                         (img.naturalWidth || 800) * (stage.clientHeight * 0.9) / (img.naturalHeight || 600));
      img.style.width = Math.round(fit * scale) + "px";
      img.style.transform = "rotate(" + angle + "deg)";
      img.dataset.angle = angle; img.dataset.scale = scale;
    };
    img.addEventListener("load", apply);
    document.querySelectorAll(".thumb[data-photo]").forEach(function (b) {
      b.addEventListener("click", function () { img.src = b.dataset.photo; scale = 1; angle = 0; apply(); viewer.hidden = false; });
    });
    viewer.querySelector(".viewer-bar").addEventListener("click", function (e) {
      var act = e.target.dataset.act;
      if (act === "zoom-in") scale = Math.min(scale * 1.25, 6);
      else if (act === "zoom-out") scale = Math.max(scale / 1.25, 0.25);
      else if (act === "rotate") angle = (angle + 90) % 360;
      else if (act === "reset") { scale = 1; angle = 0; }
      else if (act === "close") { viewer.hidden = true; return; }
      apply();
    });
    viewer.querySelector(".viewer-stage").addEventListener("wheel", function (e) {
      e.preventDefault(); scale = e.deltaY < 0 ? Math.min(scale * 1.1, 6) : Math.max(scale / 1.1, 0.25); apply();
    }, { passive: false });
    document.addEventListener("keydown", function (e) { if (e.key === "Escape") viewer.hidden = true; });
  }
  var all = document.getElementById("pick-all");
  if (all) all.addEventListener("change", function () {
    document.querySelectorAll("input[name=pick]").forEach(function (c) { c.checked = all.checked; });
  });
  document.querySelectorAll("[data-confirm]").forEach(function (b) {
    b.addEventListener("click", function (e) { if (!window.confirm(b.dataset.confirm)) e.preventDefault(); });
  });
  document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
    s.addEventListener("change", function () { s.form.submit(); });
  });
  var tpl = document.getElementById("reason-template");
  if (tpl) tpl.addEventListener("change", function () { if (tpl.value) document.getElementById("reason").value = tpl.value; });
})();
