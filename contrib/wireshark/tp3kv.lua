--[[
tp3kv.lua: a Wireshark/tshark dissector for the tp3kv peer-to-peer key-value
protocol (UFMG DCC023 TP3). The wire format is docs/PROTOCOL.md; more in
contrib/wireshark/README.md.

Use it for one run (from the repository root):
    wireshark -X lua_script:contrib/wireshark/tp3kv.lua
    tshark -X lua_script:contrib/wireshark/tp3kv.lua -r capture.pcapng -Y tp3kv
    tshark -X lua_script:contrib/wireshark/tp3kv.lua -i lo -f tcp -Y tp3kv
or for good: copy it into your personal Lua plugins folder (Help > About Wireshark
> Folders > "Personal Lua Plugins", usually ~/.local/lib/wireshark/plugins/) and
restart Wireshark. Not both: loaded twice, it fails with "there cannot be two
protocols with the same description".

The protocol has no fixed port, so a conversation is found three ways:
  * a TCP heuristic, on by default ("tp3kv_tcp" in Analyze > Enabled Protocols;
    tshark --disable-heuristic tp3kv_tcp): a segment that starts with valid
    frames makes the whole TCP conversation, both directions, tp3kv;
  * Decode As on a TCP port: tshark -d tcp.port==5001,tp3kv ...
  * the preference tp3kv.tcp_ports (empty by default):
    tshark -o tp3kv.tcp_ports:5001-5004 ...
When an ephemeral port happens to be another protocol's registered port (6000 is
X11), that protocol wins over the heuristic: add -o tcp.try_heuristic_first:TRUE.

Fields: tp3kv.type, tp3kv.port (ID), tp3kv.seq, tp3kv.ttl, tp3kv.client_ip,
tp3kv.client_port, tp3kv.len, tp3kv.key, tp3kv.info, tp3kv.value, and the expert
error tp3kv.malformed. Every copy of one query:
    tp3kv.seq == 7 && tp3kv.client_port == 6000

Tested with Wireshark 4.0 (Lua 5.2); it uses no bit operators, so Lua 5.2 to 5.4.
]]

local MAX_TEXT = 400

local proto = Proto("tp3kv", "TP3 Key-Value Lookup Protocol")

-- type -> name, and the header size (bytes before the text, or the whole frame).
local TYPES = {
    [4] = { name = "ID", header = 4 },
    [5] = { name = "KEYREQ", header = 8 },
    [6] = { name = "TOPOREQ", header = 6 },
    [7] = { name = "KEYFLOOD", header = 16 },
    [8] = { name = "TOPOFLOOD", header = 16 },
    [9] = { name = "RESP", header = 8 },
}
local TYPE_NAMES = {}
for t, d in pairs(TYPES) do
    TYPE_NAMES[t] = d.name
end

-- Where each type keeps its len field (types without text have none).
local LEN_OFFSET = { [5] = 6, [7] = 14, [8] = 14, [9] = 6 }

local f = {
    type = ProtoField.uint16("tp3kv.type", "Type", base.DEC, TYPE_NAMES),
    port = ProtoField.uint16("tp3kv.port", "Port", base.DEC, nil, nil,
        "ID: 0 from a servent, else the client's reply port"),
    ttl = ProtoField.uint16("tp3kv.ttl", "TTL", base.DEC),
    seq = ProtoField.uint32("tp3kv.seq", "Sequence number", base.DEC),
    client_ip = ProtoField.ipv4("tp3kv.client_ip", "Client IP",
        "The querying client's reply address"),
    client_port = ProtoField.uint16("tp3kv.client_port", "Client port", base.DEC),
    len = ProtoField.uint16("tp3kv.len", "Length", base.DEC),
    key = ProtoField.string("tp3kv.key", "Key", base.UNICODE),
    info = ProtoField.string("tp3kv.info", "Topology info", base.UNICODE),
    value = ProtoField.string("tp3kv.value", "Value", base.UNICODE),
}
proto.fields = { f.type, f.port, f.ttl, f.seq, f.client_ip, f.client_port,
    f.len, f.key, f.info, f.value }

local e_malformed = ProtoExpert.new("tp3kv.malformed", "Malformed tp3kv frame",
    expert.group.MALFORMED, expert.severity.ERROR)
proto.experts = { e_malformed }

proto.prefs.tcp_ports = Pref.range("TCP ports", "",
    "TCP ports always decoded as tp3kv (none by default: the protocol has no fixed port)",
    65535)

-- Why a frame starting at `offset` cannot be decoded, once enough of it is there
-- to tell; nil if it looks fine (or is too short to tell yet).
local function fault(tvb, offset)
    local avail = tvb:len() - offset
    if avail < 2 then
        return nil
    end
    local t = tvb(offset, 2):uint()
    local d = TYPES[t]
    if not d then
        return string.format("unknown type %d: the stream cannot be resynchronised", t)
    end
    local lo = LEN_OFFSET[t]
    if lo and avail >= lo + 2 then
        local len = tvb(offset + lo, 2):uint()
        if len > MAX_TEXT then
            return string.format("%s length %d is over %d", d.name, len, MAX_TEXT)
        end
    end
    return nil
end

-- The full length of the frame at `offset`, for dissect_tcp_pdus. Asking for the
-- header size first makes TCP gather the header, then the text.
local function frame_len(tvb, pinfo, offset)
    local avail = tvb:len() - offset
    if fault(tvb, offset) then
        -- Unknown type or oversized len: nothing to resynchronise on, so the rest
        -- of the segment becomes one malformed PDU (and no loop).
        return math.max(avail, 2)
    end
    local d = TYPES[tvb(offset, 2):uint()]
    local lo = LEN_OFFSET[tvb(offset, 2):uint()]
    if not lo then
        return d.header
    end
    if avail < d.header then
        return d.header
    end
    return d.header + tvb(offset + lo, 2):uint()
end

-- The bytes of a text field for the Info column, quoted: valid UTF-8 is kept, any
-- other byte becomes U+FFFD, control characters are escaped, and past `limit` bytes
-- it is cut (never inside a character). TvbRange:string(ENC_UTF_8) is not used:
-- Wireshark 4.0 cuts its result to the raw length, splitting characters.
local function quote(raw, limit)
    local out, size = {}, 0
    local i, n = 1, #raw
    while i <= n do
        local b = raw:byte(i)
        local piece
        local width = (b >= 0xC2 and b <= 0xDF and 2) or (b >= 0xE0 and b <= 0xEF and 3)
            or (b >= 0xF0 and b <= 0xF4 and 4) or 1
        local valid = width > 1 and i + width - 1 <= n
        for j = i + 1, math.min(i + width - 1, n) do
            local c = raw:byte(j)
            if c < 0x80 or c > 0xBF then
                valid = false
            end
        end
        if b < 0x80 then
            if b < 0x20 or b == 0x7F then
                piece = string.format("\\x%02x", b)
            elseif b == 0x22 or b == 0x5C then
                piece = "\\" .. string.char(b)
            else
                piece = string.char(b)
            end
        elseif valid then
            piece = raw:sub(i, i + width - 1)
        else
            width, piece = 1, "\239\191\189"
        end
        if size + #piece > limit then
            out[#out + 1] = "..."
            break
        end
        out[#out + 1] = piece
        size = size + #piece
        i = i + width
    end
    return "\"" .. table.concat(out) .. "\""
end

-- Adds a text field, decoded by Wireshark as UTF-8 (invalid bytes replaced), and
-- returns its Info column form.
local function add_text(tree, field, tvb, offset, len)
    local range = tvb(offset, len)
    tree:add_packet_field(field, range, ENC_UTF_8)
    return quote(range:raw(), 45)
end

-- One complete frame (or the malformed rest of a segment).
local function dissect_frame(tvb, pinfo, tree)
    local t = tvb(0, 2):uint()
    local d = TYPES[t]
    local name = d and d.name or string.format("type %d", t)
    local sub = tree:add(proto, tvb())
    sub:add(f.type, tvb(0, 2))
    local summary
    local problem = fault(tvb, 0)

    if problem then
        local lo = LEN_OFFSET[t]
        if d and lo then
            sub:add(f.len, tvb(lo, 2))
        end
        sub:add_proto_expert_info(e_malformed, problem)
        summary = "MALFORMED " .. problem
    elseif t == 4 then
        local port = tvb(2, 2):uint()
        local item = sub:add(f.port, tvb(2, 2))
        if port == 0 then
            item:append_text(" (a servent)")
            summary = "ID port=0 (servent)"
        else
            item:append_text(" (a client's reply port)")
            summary = string.format("ID port=%d (client)", port)
        end
    elseif t == 6 then
        sub:add(f.seq, tvb(2, 4))
        summary = string.format("TOPOREQ seq=%d", tvb(2, 4):uint())
    elseif t == 5 or t == 9 then
        local len = tvb(6, 2):uint()
        sub:add(f.seq, tvb(2, 4))
        sub:add(f.len, tvb(6, 2))
        local s = add_text(sub, t == 5 and f.key or f.value, tvb, 8, len)
        summary = string.format("%s seq=%d %s=%s", name, tvb(2, 4):uint(),
            t == 5 and "key" or "value", s)
    else -- 7, 8: the floods
        local len = tvb(14, 2):uint()
        sub:add(f.ttl, tvb(2, 2))
        sub:add(f.seq, tvb(4, 4))
        sub:add(f.client_ip, tvb(8, 4))
        sub:add(f.client_port, tvb(12, 2))
        sub:add(f.len, tvb(14, 2))
        local s = add_text(sub, t == 7 and f.key or f.info, tvb, 16, len)
        summary = string.format("%s ttl=%d seq=%d client=%s:%d %s=%s", name,
            tvb(2, 2):uint(), tvb(4, 4):uint(), tostring(tvb(8, 4):ipv4()),
            tvb(12, 2):uint(), t == 7 and "key" or "info", s)
    end
    sub:append_text(": " .. summary)

    -- The first frame of a packet replaces TCP's Info text; later ones append.
    if tostring(pinfo.cols.protocol) ~= "TP3KV" then
        pinfo.cols.protocol:set("TP3KV")
        pinfo.cols.info:set(summary)
    else
        pinfo.cols.info:append("; " .. summary)
    end
    return tvb:len()
end

local function dissect(tvb, pinfo, tree)
    dissect_tcp_pdus(tvb, tree, 2, frame_len, dissect_frame, true)
    return tvb:len()
end
proto.dissector = dissect

-- Whether a segment starts with a tp3kv frame: every complete header in it is
-- valid and the frames line up back to back (the last may continue later).
local function looks_like_tp3kv(tvb)
    local total = tvb:len()
    if total < 2 then
        return false
    end
    local offset = 0
    local frames = 0
    while offset < total and frames < 64 do
        if total - offset < 2 then
            return frames > 0
        end
        local d = TYPES[tvb(offset, 2):uint()]
        if not d or fault(tvb, offset) then
            return false
        end
        -- The first header must be whole: two bytes alone say too little.
        if offset + d.header > total then
            return frames > 0
        end
        offset = offset + frame_len(tvb, nil, offset)
        frames = frames + 1
    end
    return frames > 0
end

local function heuristic(tvb, pinfo, tree)
    if not looks_like_tp3kv(tvb) then
        return false
    end
    -- From now on the whole TCP conversation is ours, both directions.
    pinfo.conversation = proto
    -- Called directly: going through proto.dissector (a dissector handle) would use
    -- up TCP's permission to reassemble, and a frame split in this very first
    -- segment would be lost.
    dissect(tvb, pinfo, tree)
    return true
end
proto:register_heuristic("tcp", heuristic)

local tcp_port = DissectorTable.get("tcp.port")
tcp_port:add_for_decode_as(proto)

local registered_ports = ""
function proto.prefs_changed()
    if registered_ports ~= "" then
        tcp_port:remove(registered_ports, proto)
    end
    registered_ports = tostring(proto.prefs.tcp_ports)
    if registered_ports ~= "" then
        tcp_port:add(registered_ports, proto)
    end
end
