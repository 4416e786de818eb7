// The one quoting helper: a string as a JSON string literal. QMP commands
// need exactly that; messages and logs use it too, so that a name or path
// with quotes, newlines or control characters reads unambiguously.

/// `s` as a JSON string literal (RFC 8259): quotes and backslashes escaped,
/// control characters and DEL as `\n`, `\r`, `\t` or `\u00XX`.
func quoted(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 || u.value == 0x7f {
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}
