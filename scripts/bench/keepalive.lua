-- wrk script: session keep-alives from DEVICES distinct clients, one stream each, round robin
-- (what a fleet of engines sends every provider_refresh_interval).
local devices = tonumber(os.getenv("DEVICES") or "10000")
local token = os.getenv("TELEMETRY_TOKEN")
local n = 0
local offset = 0

function setup(thread)
  thread:set("offset", math.random(0, devices))
end

function request()
  n = n + 1
  local id = (offset + n) % devices
  local body = string.format(
    '{"clientId":"device-%d","sessions":[{"provider":"agora","streamId":"stream-%d"}]}', id, id)
  return wrk.format("POST", "/api/streaming/sessions/alive",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end
