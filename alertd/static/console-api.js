// Talking to alertd's JSON API with the session cookie; every refusal is problem+json
// whose 'detail' is written for the desk, so it is shown as it is.
export async function api(method, path, body) {
  const init = { method: method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    return { status: 0, data: { detail: "alertd did not answer: check the network and try again." } };
  }
  const type = resp.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await resp.json() : await resp.text();
  return { status: resp.status, data: data };
}

export function problemText(data) {
  if (data && typeof data === "object" && data.detail) return data.detail;
  return typeof data === "string" && data ? data : "alertd refused the request.";
}
