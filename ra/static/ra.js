// The one script of the RA UI, and optional (every page works without it): a form shown again
// with errors moves the focus to the error summary, so that a screen reader reads it first
// (the GOV.UK pattern).
document.addEventListener("DOMContentLoaded", () => {
  const summary = document.getElementById("error-summary");
  if (summary) summary.focus();
});
