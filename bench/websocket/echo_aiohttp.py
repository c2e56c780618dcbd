# bench/websocket/run.sh's Python server: aiohttp's WebSocket echo (asyncio's own loop).
import sys
from aiohttp import web, WSMsgType

async def echo(request):
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws

app = web.Application()
app.add_routes([web.get('/', echo)])
web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None, access_log=None)
