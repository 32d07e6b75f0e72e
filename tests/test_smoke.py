from tests.support import available, earn, redeem


async def test_earn_then_redeem(client, program):
    assert (await earn(client, program, "alice", 100)).status_code == 201
    response = await redeem(client, program, "alice", 30)
    assert response.status_code == 201, response.text
    assert await available(client, program, "alice") == 70
