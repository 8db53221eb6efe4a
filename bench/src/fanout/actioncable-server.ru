# The Rails peer: Action Cable (Debian's ruby-actioncable) with its Redis adapter under Puma,
# doing the fan-out benchmark's job — ChatChannel streams "chat_<room>", and
# `POST /send { body }` broadcasts to the room `chat`. Like the Socket.IO peer it stores
# nothing. Run: REDIS_URL=redis://… puma -b tcp://127.0.0.1:PORT actioncable-server.ru
require "json"
require "logger"
require "action_cable"

module ApplicationCable
  class Connection < ActionCable::Connection::Base; end
  class Channel < ActionCable::Channel::Base; end
end

class ChatChannel < ApplicationCable::Channel
  def subscribed
    stream_from "chat_#{params[:room] || 'chat'}"
  end

  def speak(data)
    ActionCable.server.broadcast("chat_#{params[:room] || 'chat'}", { body: data["body"] })
  end
end

ActionCable.server.config.tap do |config|
  config.cable = { "adapter" => "redis", "url" => ENV.fetch("REDIS_URL") }
  config.connection_class = -> { ApplicationCable::Connection }
  config.disable_request_forgery_protection = true # the generators send no Origin
  config.logger = Logger.new(nil)
  config.worker_pool_size = Integer(ENV.fetch("WORKERS", "4"))
end

send_to_room = lambda do |env|
  body = JSON.parse(env["rack.input"].read)["body"]
  ActionCable.server.broadcast("chat_chat", { body: body })
  [201, { "content-type" => "application/json" }, ["{}"]]
end

map("/cable") { run ActionCable.server }
map("/send") { run send_to_room }
map("/") { run ->(_env) { [404, {}, []] } }
