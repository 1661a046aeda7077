//! The HTML agora shows people: sign-in, emailed code, consent, logout, and errors. Plain server-rendered
//! forms (no script), every value escaped, every form carrying its CSRF token.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

pub fn escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;display:flex;min-height:100vh;\
align-items:center;justify-content:center}main{background:#fff;padding:2rem 2.5rem;border-radius:12px;\
box-shadow:0 2px 12px #0001;width:22rem}h1{font-size:1.3rem;margin:0 0 1rem}label{display:block;margin:.8rem 0 .3rem;\
font-size:.9rem}input[type=email],input[type=password],input[type=text]{width:100%;box-sizing:border-box;padding:.55rem;\
border:1px solid #bbb;border-radius:6px;font-size:1rem}button{margin-top:1rem;width:100%;padding:.6rem;border:0;\
border-radius:6px;background:#2d5bd7;color:#fff;font-size:1rem;cursor:pointer}button.secondary{background:#e8ebf2;\
color:#222}.error{background:#fdecec;color:#8a1f1f;padding:.6rem;border-radius:6px;font-size:.9rem}\
.muted{color:#666;font-size:.85rem}hr{border:0;border-top:1px solid #eee;margin:1.4rem 0}";

/// A complete page. Responses are never cached and may not be framed (clickjacking).
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width,initial-scale=1\"><title>{title} · agora</title><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>",
        title = escape(title),
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    response
}

pub fn error(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Something went wrong",
        &format!("<h1>Something went wrong</h1><p class=\"error\">{}</p>", escape(message)),
    )
}

fn hidden(name: &str, value: &str) -> String {
    format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(name), escape(value))
}

fn notice(message: Option<&str>) -> String {
    message.map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m))).unwrap_or_default()
}

pub struct FormContext<'a> {
    pub request_id: &'a str,
    pub csrf: &'a str,
    pub client_name: &'a str,
}

impl FormContext<'_> {
    fn hidden_fields(&self) -> String {
        hidden("request", self.request_id) + &hidden("csrf", self.csrf)
    }
}

pub fn login(ctx: &FormContext, email: &str, message: Option<&str>, status: StatusCode) -> Response {
    let body = format!(
        "<h1>Sign in</h1><p class=\"muted\">to continue to <strong>{client}</strong></p>{notice}\
         <form method=\"post\" action=\"/oauth/login\">{fields}\
         <label for=\"email\">Email</label><input id=\"email\" type=\"email\" name=\"email\" value=\"{email}\" autocomplete=\"username\" required>\
         <label for=\"password\">Password</label><input id=\"password\" type=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form><hr>\
         <form method=\"post\" action=\"/oauth/login/code\">{fields}\
         <label for=\"code-email\">Or get a one-time code by email</label>\
         <input id=\"code-email\" type=\"email\" name=\"email\" value=\"{email}\" autocomplete=\"email\" required>\
         <button class=\"secondary\" type=\"submit\">Email me a code</button></form>",
        client = escape(ctx.client_name),
        notice = notice(message),
        fields = ctx.hidden_fields(),
        email = escape(email),
    );
    page(status, "Sign in", &body)
}

pub fn enter_code(ctx: &FormContext, code_id: &str, message: Option<&str>, status: StatusCode) -> Response {
    let body = format!(
        "<h1>Check your email</h1><p class=\"muted\">If an account exists for that address, we sent it a 6-digit code. \
         It expires in 10 minutes.</p>{notice}\
         <form method=\"post\" action=\"/oauth/login/code/verify\">{fields}{code_id}\
         <label for=\"code\">Code</label><input id=\"code\" type=\"text\" name=\"code\" inputmode=\"numeric\" \
         autocomplete=\"one-time-code\" pattern=\"[0-9]{{6}}\" required><button type=\"submit\">Continue</button></form>",
        notice = notice(message),
        fields = ctx.hidden_fields(),
        code_id = hidden("code_id", code_id),
    );
    page(status, "Enter your code", &body)
}

pub fn consent(ctx: &FormContext, redirect_host: &str, scopes: &[&str]) -> Response {
    let items: String = scopes.iter().map(|s| format!("<li>{}</li>", escape(describe_scope(s)))).collect();
    let body = format!(
        "<h1>Allow access?</h1><p><strong>{client}</strong> <span class=\"muted\">({host})</span> asks to:</p><ul>{items}</ul>\
         <form method=\"post\" action=\"/oauth/consent\">{fields}\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button class=\"secondary\" type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        client = escape(ctx.client_name),
        host = escape(redirect_host),
        fields = ctx.hidden_fields(),
    );
    page(StatusCode::OK, "Allow access?", &body)
}

fn describe_scope(scope: &str) -> &str {
    match scope {
        "openid" => "know who you are",
        "email" => "see your email address",
        "profile" => "see your name and picture",
        "offline_access" => "stay signed in when you are away (long-lived access)",
        "mcp:tools" => "use tools through the hub on your behalf",
        other => other,
    }
}

pub fn logout_confirm(csrf: &str, params: &[(&str, Option<&str>)]) -> Response {
    let fields: String = params.iter().filter_map(|(k, v)| v.map(|v| hidden(k, v))).collect();
    let body = format!(
        "<h1>Sign out?</h1><p>Sign out of agora on this browser?</p>\
         <form method=\"post\" action=\"/oauth/session/end/confirm\">{fields}{csrf}\
         <button type=\"submit\">Sign out</button></form>",
        csrf = hidden("csrf", csrf),
    );
    page(StatusCode::OK, "Sign out", &body)
}

pub fn signed_out(back_to: Option<&str>) -> Response {
    let next = match back_to {
        Some(url) => format!("<p><a href=\"{}\">Return to the application</a></p>", escape(url)),
        None => "<p class=\"muted\">You can close this window.</p>".to_owned(),
    };
    page(StatusCode::OK, "Signed out", &format!("<h1>You are signed out</h1>{next}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(super::escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
