/*
 * sscard-login.js: log in with the social security card from a web page (issue 15).
 *
 * No framework, no CDN, ES2017 and fetch. The page calls
 *
 *   SscardLogin.start({agentUrl, nonceUrl, tokenUrl}).then(answer => ..., error => ...)
 *
 * which (1) asks the provider for a one-time nonce (POST nonceUrl -> {"nonce": "..."}),
 * (2) asks the card agent on this computer (agentUrl, e.g. http://127.0.0.1:24821) to sign it
 * for this page's origin; the holder types the PIN in the agent's own window, never in the page,
 * (3) posts the token to tokenUrl and resolves with the provider's JSON answer. The provider
 * keeps the nonce it issued with this browser's session (never taken back from the page), so a
 * token made for another browser's login cannot log this one in.
 * Failures reject with an SscardLoginError whose `code` is stable (NO_AGENT, ORIGIN_NOT_ALLOWED,
 * NO_READER, NO_CARD, PIN_WRONG, PIN_BLOCKED, PIN_INVALID, CARD_REMOVED, CONSENT_REFUSED,
 * PIN_CANCELLED, or
 * the provider's problem code) and whose `message` is for the holder (options.messages
 * overrides the Chinese defaults).
 */
(function (global) {
  "use strict";

  var MESSAGES = {
    NO_AGENT: "未检测到社保卡登录助手（sscard agent）：请安装并启动它，然后重试。",
    ORIGIN_NOT_ALLOWED: "社保卡登录助手没有授权本网站使用社保卡登录（不在其允许列表中）。",
    NO_READER: "未检测到读卡器：请连接读卡器后重试。",
    NO_CARD: "读卡器中没有社保卡：请插入社保卡后重试。",
    CARD_REMOVED: "登录过程中社保卡被拔出：请重新插入社保卡后重试。",
    PIN_WRONG: "PIN 码错误，还可以尝试 {tries_left} 次。",
    PIN_BLOCKED: "PIN 码已锁定：请到社保服务窗口解锁。",
    PIN_CANCELLED: "已取消输入 PIN 码。",
    PIN_INVALID: "PIN 码应为 4 至 16 位数字，请重新输入（未消耗尝试次数）。",
    CONSENT_REFUSED: "您没有同意本网站使用社保卡登录。",
    // the provider's refusals the holder can act on (the English detail is for operators)
    CERTIFICATE_REVOKED: "您的社保卡证书已被吊销，不能用于登录：请到社保服务窗口办理。",
    CERTIFICATE_EXPIRED: "您的社保卡证书不在有效期内，不能用于登录：请到社保服务窗口更新。",
    PROVIDER: "登录服务暂时无法使用，请稍后重试。",
    DEFAULT: "社保卡登录失败：{detail}"
  };

  function SscardLoginError(code, message, detail, extra) {
    this.name = "SscardLoginError";
    this.code = code;
    this.message = message;
    this.detail = detail || "";
    this.extra = extra || {};
  }
  SscardLoginError.prototype = Object.create(Error.prototype);
  SscardLoginError.prototype.constructor = SscardLoginError;

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, name) {
      return values[name] === undefined ? "" : String(values[name]);
    });
  }

  function failure(options, code, detail, extra) {
    var table = Object.assign({}, MESSAGES, options.messages || {});
    var template = table[code] || table.DEFAULT;
    var values = Object.assign({detail: detail || code}, extra || {});
    return new SscardLoginError(code, fill(template, values), detail, extra);
  }

  async function problemOf(answer) {
    try {
      var body = await answer.json();
      if (body && typeof body.code === "string") return body;
    } catch (e) { /* not JSON: fall through */ }
    return {code: "HTTP_" + answer.status, detail: "HTTP " + answer.status};
  }

  // A CORS-blocked answer and a refused connection look alike to the page (a TypeError); an
  // opaque no-cors request tells them apart: it succeeds whenever something answers.
  async function agentUnreachable(options) {
    try {
      await fetch(options.agentUrl + "/v1/readers", {mode: "no-cors", cache: "no-store"});
      return failure(options, "ORIGIN_NOT_ALLOWED", "the agent refused this origin");
    } catch (e) {
      return failure(options, "NO_AGENT", "no agent at " + options.agentUrl);
    }
  }

  async function callAgent(options, nonce) {
    var answer;
    try {
      answer = await fetch(options.agentUrl + "/v1/sign", {
        method: "POST", mode: "cors", cache: "no-store", credentials: "omit",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({origin: global.location.origin, nonce: nonce})
      });
    } catch (e) {
      throw await agentUnreachable(options);
    }
    if (!answer.ok) {
      var problem = await problemOf(answer);
      throw failure(options, problem.code, problem.detail, {tries_left: problem.tries_left});
    }
    return answer.json();
  }

  async function provider(options, url, body) {
    var answer;
    try {
      answer = await fetch(url, {
        method: "POST", credentials: "same-origin", cache: "no-store",
        headers: {"Content-Type": "application/json", "Accept": "application/json"},
        body: JSON.stringify(body)
      });
    } catch (e) {
      throw failure(options, "PROVIDER", "the provider at " + url + " did not answer");
    }
    if (!answer.ok) {
      var problem = await problemOf(answer);
      throw failure(options, problem.code, problem.detail);
    }
    return answer.json();
  }

  async function start(options) {
    if (!options || !options.agentUrl || !options.nonceUrl || !options.tokenUrl) {
      throw new TypeError("SscardLogin.start needs {agentUrl, nonceUrl, tokenUrl}");
    }
    options = Object.assign({}, options, {agentUrl: options.agentUrl.replace(/\/+$/, "")});
    var issued = await provider(options, options.nonceUrl, {});
    if (!issued || typeof issued.nonce !== "string") {
      throw failure(options, "PROVIDER", "the provider gave no nonce");
    }
    var token = await callAgent(options, issued.nonce);
    return provider(options, options.tokenUrl, token);
  }

  global.SscardLogin = {start: start, Error: SscardLoginError, messages: MESSAGES};
})(typeof window !== "undefined" ? window : this);
