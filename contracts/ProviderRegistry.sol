// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "./lib/IERC20.sol";
import {ReentrancyGuard} from "./lib/ReentrancyGuard.sol";
import {TokenTransfers} from "./lib/TokenTransfers.sol";
import {ModelRegistry} from "./ModelRegistry.sol";

/// @title ProviderRegistry
/// @notice Providers register their libp2p peer id, the models they serve (registered hashes) and
/// their prices, with a stake in the network's ERC-20. Stake leaves only through an unbonding
/// period, during which it can still be slashed; only the consensus contract slashes.
contract ProviderRegistry is ReentrancyGuard {
    using TokenTransfers for IERC20;

    /// @notice A model a provider serves and its prices per 1M tokens, in the token's smallest unit.
    struct Offer {
        bytes32 modelHash;
        uint128 inputPricePerMillion;
        uint128 outputPricePerMillion;
    }

    /// @notice A provider's record.
    struct Provider {
        string peerId;
        uint256 stake;
        uint256 unbonding;
        uint64 unbondingReleaseAt;
        uint64 registeredAt;
        Offer[] offers;
    }

    uint256 public constant MAX_OFFERS = 32;
    uint256 public constant MAX_PEER_ID_BYTES = 128;

    IERC20 public immutable token;
    ModelRegistry public immutable models;
    uint256 public immutable minimumStake;
    uint64 public immutable unbondingPeriod;
    uint256 public immutable maxProviders;
    address public immutable owner;
    address public consensus;

    mapping(address provider => Provider) private providers;
    mapping(address provider => uint256) private indexPlusOne;
    address[] private providerList;

    event ProviderRegistered(address indexed provider, string peerId, uint256 stake);
    event OffersUpdated(address indexed provider, Offer[] offers);
    event PeerIdUpdated(address indexed provider, string peerId);
    event StakeAdded(address indexed provider, uint256 amount, uint256 stake);
    event UnbondingRequested(address indexed provider, uint256 amount, uint64 releaseAt);
    event StakeWithdrawn(address indexed provider, uint256 amount);
    event ProviderExited(address indexed provider);
    event ProviderSlashed(address indexed provider, uint256 amount, address recipient);
    event ConsensusSet(address consensus);

    /// @notice The caller is not a registered provider.
    error NotRegistered(address provider);
    /// @notice The provider is registered already.
    error AlreadyRegistered(address provider);
    /// @notice The stake would be below the minimum.
    error StakeBelowMinimum(uint256 stake, uint256 minimum);
    /// @notice A peer id is required and at most MAX_PEER_ID_BYTES long.
    error InvalidPeerId();
    /// @notice Between 1 and MAX_OFFERS offers.
    error InvalidOfferCount(uint256 count, uint256 maximum);
    /// @notice A model is offered twice.
    error DuplicateOffer(bytes32 modelHash);
    /// @notice Every offered model must be in the model registry.
    error UnregisteredModel(bytes32 modelHash);
    /// @notice `maxProviders` providers are registered already.
    error ProviderSetFull(uint256 maximum);
    /// @notice Amounts must be positive.
    error ZeroAmount();
    /// @notice More than the bonded stake was asked to unbond.
    error InsufficientStake(uint256 stake, uint256 requested);
    /// @notice Nothing is unbonding.
    error NothingUnbonding();
    /// @notice The unbonding period ends at `releaseAt`.
    error UnbondingNotFinished(uint64 releaseAt);
    /// @notice Only the consensus contract slashes.
    error NotConsensus(address caller);
    /// @notice Only the owner sets the consensus contract, once.
    error NotOwner(address caller);
    /// @notice The consensus contract is set already.
    error ConsensusAlreadySet(address consensus);

    constructor(
        IERC20 token_,
        ModelRegistry models_,
        uint256 minimumStake_,
        uint64 unbondingPeriod_,
        uint256 maxProviders_
    ) {
        token = token_;
        models = models_;
        minimumStake = minimumStake_;
        unbondingPeriod = unbondingPeriod_;
        maxProviders = maxProviders_;
        owner = msg.sender;
    }

    /// @notice Sets the one contract allowed to slash; owner only, once.
    function setConsensus(address consensus_) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        if (consensus != address(0)) revert ConsensusAlreadySet(consensus);
        consensus = consensus_;
        emit ConsensusSet(consensus_);
    }

    /// @notice Registers the sender as a provider with `stake` tokens (approved beforehand).
    function register(string calldata peerId, Offer[] calldata offers, uint256 stake) external nonReentrant {
        if (indexPlusOne[msg.sender] != 0) revert AlreadyRegistered(msg.sender);
        if (providerList.length >= maxProviders) revert ProviderSetFull(maxProviders);
        if (stake < minimumStake || stake == 0) revert StakeBelowMinimum(stake, minimumStake);
        _checkPeerId(peerId);
        Provider storage provider = providers[msg.sender];
        _setOffers(provider, offers);
        provider.peerId = peerId;
        provider.registeredAt = uint64(block.timestamp);
        providerList.push(msg.sender);
        indexPlusOne[msg.sender] = providerList.length;
        uint256 received = token.pull(msg.sender, stake);
        if (received < minimumStake) revert StakeBelowMinimum(received, minimumStake);
        provider.stake = received;
        emit ProviderRegistered(msg.sender, peerId, received);
        emit OffersUpdated(msg.sender, offers);
    }

    /// @notice Replaces the sender's offers.
    function updateOffers(Offer[] calldata offers) external {
        Provider storage provider = _registered(msg.sender);
        _setOffers(provider, offers);
        emit OffersUpdated(msg.sender, offers);
    }

    /// @notice Changes the sender's libp2p peer id.
    function updatePeerId(string calldata peerId) external {
        Provider storage provider = _registered(msg.sender);
        _checkPeerId(peerId);
        provider.peerId = peerId;
        emit PeerIdUpdated(msg.sender, peerId);
    }

    /// @notice Adds `amount` to the sender's bonded stake.
    function addStake(uint256 amount) external nonReentrant {
        Provider storage provider = _registered(msg.sender);
        if (amount == 0) revert ZeroAmount();
        uint256 received = token.pull(msg.sender, amount);
        provider.stake += received;
        emit StakeAdded(msg.sender, received, provider.stake);
    }

    /// @notice Moves `amount` of bonded stake to unbonding; the whole unbonding balance is released
    /// `unbondingPeriod` after the latest request. Unbonding stake can still be slashed.
    function requestUnbond(uint256 amount) external {
        Provider storage provider = _registered(msg.sender);
        if (amount == 0) revert ZeroAmount();
        if (amount > provider.stake) revert InsufficientStake(provider.stake, amount);
        provider.stake -= amount;
        provider.unbonding += amount;
        provider.unbondingReleaseAt = uint64(block.timestamp) + unbondingPeriod;
        emit UnbondingRequested(msg.sender, amount, provider.unbondingReleaseAt);
    }

    /// @notice Sends the sender its unbonded stake once the period is over; a provider left with
    /// no stake at all is removed.
    function withdraw() external nonReentrant {
        Provider storage provider = _registered(msg.sender);
        uint256 amount = provider.unbonding;
        if (amount == 0) revert NothingUnbonding();
        if (block.timestamp < provider.unbondingReleaseAt) revert UnbondingNotFinished(provider.unbondingReleaseAt);
        provider.unbonding = 0;
        provider.unbondingReleaseAt = 0;
        if (provider.stake == 0) _remove(msg.sender);
        token.send(msg.sender, amount);
        emit StakeWithdrawn(msg.sender, amount);
    }

    /// @notice Takes up to `amount` of a provider's stake (bonded first, then unbonding) and sends
    /// it to `recipient`; consensus contract only. Returns what was taken.
    function slash(address providerAddress, uint256 amount, address recipient)
        external
        nonReentrant
        returns (uint256 taken)
    {
        if (msg.sender != consensus) revert NotConsensus(msg.sender);
        Provider storage provider = _registered(providerAddress);
        uint256 fromStake = amount < provider.stake ? amount : provider.stake;
        provider.stake -= fromStake;
        uint256 rest = amount - fromStake;
        uint256 fromUnbonding = rest < provider.unbonding ? rest : provider.unbonding;
        provider.unbonding -= fromUnbonding;
        taken = fromStake + fromUnbonding;
        if (provider.stake == 0 && provider.unbonding == 0) _remove(providerAddress);
        token.send(recipient, taken);
        emit ProviderSlashed(providerAddress, taken, recipient);
    }

    /// @notice Whether a provider is registered with at least the minimum bonded stake.
    function isActive(address providerAddress) public view returns (bool) {
        return indexPlusOne[providerAddress] != 0 && providers[providerAddress].stake >= minimumStake;
    }

    /// @notice Whether an address is registered (active or not).
    function isRegistered(address providerAddress) external view returns (bool) {
        return indexPlusOne[providerAddress] != 0;
    }

    /// @notice A provider's record.
    function getProvider(address providerAddress) external view returns (Provider memory) {
        if (indexPlusOne[providerAddress] == 0) revert NotRegistered(providerAddress);
        return providers[providerAddress];
    }

    /// @notice The registrations of `addresses`, in order (each must be registered): many providers in one call, so a
    ///         gateway reads the staked providers in a few calls instead of one per provider.
    function getProviders(address[] calldata addresses) external view returns (Provider[] memory records) {
        records = new Provider[](addresses.length);
        for (uint256 i = 0; i < addresses.length; i++) {
            if (indexPlusOne[addresses[i]] == 0) revert NotRegistered(addresses[i]);
            records[i] = providers[addresses[i]];
        }
    }

    /// @notice Every registered provider (at most `maxProviders`).
    function providerAddresses() external view returns (address[] memory) {
        return providerList;
    }

    /// @notice The registered providers with at least the minimum bonded stake.
    function activeProviders() external view returns (address[] memory active) {
        uint256 count = 0;
        address[] memory all = providerList;
        active = new address[](all.length);
        for (uint256 i = 0; i < all.length; i++) {
            if (providers[all[i]].stake >= minimumStake) active[count++] = all[i];
        }
        assembly {
            mstore(active, count)
        }
    }

    /// @notice How many providers are registered.
    function providerCount() external view returns (uint256) {
        return providerList.length;
    }

    function _registered(address providerAddress) private view returns (Provider storage) {
        if (indexPlusOne[providerAddress] == 0) revert NotRegistered(providerAddress);
        return providers[providerAddress];
    }

    function _checkPeerId(string calldata peerId) private pure {
        if (bytes(peerId).length == 0 || bytes(peerId).length > MAX_PEER_ID_BYTES) revert InvalidPeerId();
    }

    function _setOffers(Provider storage provider, Offer[] calldata offers) private {
        if (offers.length == 0 || offers.length > MAX_OFFERS) revert InvalidOfferCount(offers.length, MAX_OFFERS);
        delete provider.offers;
        for (uint256 i = 0; i < offers.length; i++) {
            bytes32 modelHash = offers[i].modelHash;
            if (!models.isRegistered(modelHash)) revert UnregisteredModel(modelHash);
            for (uint256 j = 0; j < i; j++) {
                if (offers[j].modelHash == modelHash) revert DuplicateOffer(modelHash);
            }
            provider.offers.push(offers[i]);
        }
    }

    function _remove(address providerAddress) private {
        uint256 index = indexPlusOne[providerAddress] - 1;
        address last = providerList[providerList.length - 1];
        providerList[index] = last;
        indexPlusOne[last] = index + 1;
        providerList.pop();
        delete indexPlusOne[providerAddress];
        delete providers[providerAddress];
        emit ProviderExited(providerAddress);
    }
}
